"""Access control: principals, their grants and their API keys (admin of everything)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query

from mqless import wiring
from mqless.domain.access.api_keys import IssuedKey
from mqless.domain.access.users import PrincipalView
from mqless.transports.http.models.access import (
    KeyList,
    KeyRequest,
    PrincipalList,
    PrincipalRequest,
)
from mqless.transports.http.routes.common import caller, content, json_response

router = Router()


PrincipalId = Annotated[
    str, Path(max_length=128, description="1-128 of A-Z a-z 0-9 _ . @ : + = , -")
]
KeyId = Annotated[str, Path(max_length=64, description="The key's id (24 hex digits).")]


@router.get("/access/principals", summary="List principals and their grants", tags=["access"])
def list_principals() -> PrincipalList:
    return PrincipalList(principals=wiring.access().list_principals(caller(router)))


@router.put(
    "/access/principals/<principal_id>",
    summary="Create a principal or replace its grants",
    tags=["access"],
    responses={
        200: content(PrincipalView, "Grants replaced"),
        201: content(PrincipalView, "Created"),
    },
)
def put_principal(
    principal_id: PrincipalId, request: Annotated[PrincipalRequest, Body()]
) -> Response[str]:
    view, created = wiring.access().put_principal(
        caller(router), unquote(principal_id), request.grants
    )
    return json_response(201 if created else 200, view)


@router.get("/access/principals/<principal_id>", summary="A principal's grants", tags=["access"])
def get_principal(principal_id: PrincipalId) -> PrincipalView:
    return wiring.access().get_principal(caller(router), unquote(principal_id))


@router.delete(
    "/access/principals/<principal_id>",
    summary="Delete a principal and revoke its API keys",
    tags=["access"],
    responses={204: {"description": "Deleted", "content": {}}},
)
def delete_principal(principal_id: PrincipalId) -> Response[str]:
    wiring.access().delete_principal(caller(router), unquote(principal_id))
    return Response(status_code=204, content_type=content_types.APPLICATION_JSON, body="")


@router.post(
    "/access/principals/<principal_id>/keys",
    summary="Issue an API key (its token is shown only in this response)",
    tags=["access"],
    responses={201: content(IssuedKey, "Issued")},
)
def issue_key(
    principal_id: PrincipalId, request: Annotated[KeyRequest | None, Body()] = None
) -> Response[str]:
    ttl = (request or KeyRequest()).ttl_seconds
    issued = wiring.access().issue_key(caller(router), unquote(principal_id), ttl_seconds=ttl)
    return Response(
        status_code=201,
        content_type=content_types.APPLICATION_JSON,
        body=issued.model_dump_json(),
        headers={"Cache-Control": ["no-store"]},
    )


@router.get("/access/keys", summary="List API keys (never their secrets)", tags=["access"])
def list_keys(
    principal: Annotated[
        str | None, Query(max_length=128, description="Only this principal's keys.")
    ] = None,
) -> KeyList:
    return KeyList(keys=wiring.access().list_keys(caller(router), principal))


@router.delete(
    "/access/keys/<key_id>",
    summary="Revoke an API key",
    tags=["access"],
    responses={204: {"description": "Revoked", "content": {}}},
)
def revoke_key(key_id: KeyId) -> Response[str]:
    wiring.access().revoke_key(caller(router), key_id)
    return Response(status_code=204, content_type=content_types.APPLICATION_JSON, body="")
