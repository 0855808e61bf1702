"""Every change `mqless dev` (and the test suite) makes to moto 5.2, in one place.

Each fix is a small patch applied as a context manager, written so that it could be offered
to moto as it stands: it says which behaviour of moto it changes and keeps DynamoDB's
semantics exactly (atomic transactions, conditional writes, stream order per shard).
`tests/component/test_moto_fixes.py` compares each one with moto's own behaviour.

- `atomic_requests`: one request at a time, as DynamoDB applies each request atomically
  (moto's in-process backend lets a thread switch fall between a condition and its write).
  It also measures how long each request held the lock (`REQUEST_LOCK`).
- `data_models_untracked`: moto keeps no list of every DynamoDB item, stream record and
  shard iterator it ever made (memory and garbage collection time grew with every request).
- `handler_methods_listed_once`: moto lists a response handler's methods once per class,
  not with `inspect.getmembers` on every request.
- `update_expressions_parsed_once`: each UpdateExpression text is parsed once, not twice
  per UpdateItem.
- `update_expression_structures_checked_once`: the checks of an UpdateExpression's structure
  (one clause of each kind, no overlapping paths, no key attribute) run once per expression,
  names and table keys, not on every UpdateItem; the checks of values and item still do.
- `update_expression_spaces_removed_once`: the spaces around an UpdateExpression's
  operators are removed once per text, not with `re.sub` on every UpdateItem.
- `update_expression_structures_checked_at_the_root`: those checks of clause counts and
  overlapping paths run once at the root, not again at every nested node (quadratic).
- `update_expression_trees_copied_node_by_node`: the copy of an UpdateExpression's tree
  that each UpdateItem validates is built node by node, not with `copy.deepcopy`.
- `clauses_of_kept_parses_found_once`: the clauses UpdateItem's handler looks for in a
  kept parse (the names and values it uses) are found once per parse, not on every request.
- `resolving_hooks_ask_node_types_once`: the path resolving pass tells an update's actions
  from its other nodes by type, once per type, not with four ABC checks before every child.
- `expression_passes_walk_with_kept_maps`: each validation pass over an expression tree
  builds its map of what it processes once, not once per node visited.
- `update_passes_skip_what_they_cannot_act_on`: each validation pass enters only the
  subtrees where a node it acts on can be (not the path each action sets, say).
- `update_old_images_copied_when_returned`: an UpdateItem copies and writes out the item
  as it was before only when its ReturnValues answer with it (not for NONE or ALL_NEW).
- `condition_expressions_lexed_once`: each ConditionExpression text is lexed once, not on
  every conditional write.
- `condition_expressions_parsed_once`: each ConditionExpression (text, names and value
  placeholders) is parsed into its syntax tree once; each use builds its conditions from the
  tree with its own values.
- `items_hold_keys_once`: a stored item holds each key value once (the objects its table
  files it under), shares its hash key with the items of its partition, a small value
  equal to the last item's under the same name with it, and its attribute names with every
  other item (memory per message).
- `contains_casts_elements_directly`: `contains(path, operand)` on a set or a list casts its
  elements directly, not through a DynamoType made for each (a condition on a set that
  grows with every acknowledgement).
- `transactions_undo_by_log`: a failed TransactWriteItems is undone from the prior image
  of each item it wrote, not by putting back a deep copy of every table it touched taken
  before every transaction (a cost that grew with everything ever stored and streamed).
  The tables stay the same objects, so stream shard iterators survive a rollback.
- `queries_read_one_partition`: a Query reads the partition it names (of the base table or
  an index) in key order, from its sort key condition and start key up to its limit, not
  every item of the table sorted.
- `query_items_sized_once`: a Query or Scan sizes each item it reads once, not twice.
- `attribute_values_serialize_directly`: DynamoDB responses write each AttributeValue
  without asking moto's attribute picker for each of its ten possible members.
- `attribute_maps_written_at_once`: a map of AttributeValues (an item, a key) with no
  binary in it is written in one step, not value by value through the generic serializer.
- `result_members_picked_by_kept_names`: each member of a result held in a dict is picked
  by the names moto would try for it, listed once per member shape, not by asking six alias
  providers made anew for every member of every response.
- `request_attribute_values_read_directly`: a DynamoDB request's AttributeValues (items,
  keys, expression values) are taken as JSON decoded them when parsing would give them back
  unchanged, not walked through their ten-member shape.
- `requests_normalized_directly`: a JSON-protocol request becomes moto's werkzeug request
  from the WSGI environ werkzeug's test builder would make, built directly.
- `dynamodb_requests_left_plain`: a DynamoDB JSON request reaches moto's handler as the
  values its set-up reads (method, URL, headers, body), not as a werkzeug request.
- `json_errors_written_once`: a JSON-protocol error (a failed condition, an attribute an
  UpdateItem's ADD finds missing) is written out as JSON only, not first as XML.
- `request_ids_not_searched_in_json`: a response body without `<RequestId>` is not
  searched, character by character, for an XML request id to replace.
- `response_dates_formatted_once_a_second`: the `date` header of a response is formatted
  once per second, not for every response.
- `answers_handed_over`: a successful DynamoDB answer to botocore in the same process is
  handed over as the dict moto's serializer built, not written out as JSON text (and
  checksummed) to be read back with `json.loads`; it is written out only if read as text.
- `stream_records_handed_over`: a DynamoDB Streams GetRecords answer to botocore in the same
  process is written member by member from a plan of its shape made once (not through the
  attribute picker and generic dispatch for every member of every record) and handed over
  as that dict, like a DynamoDB answer.
- `requests_routed_once`: the handler of a JSON-protocol request's URL is found once per
  URL, not by trying every service's URL pattern and the backend's whole URL table on
  every request.
- `backends_found_without_the_lock`: an account's backend that exists already is found
  without moto's global lock and its Python `==` over every backend in use.
- `action_names_converted_once`: a request's action becomes its handler method's name once
  per action, not character by character on every request.
- `dynamo_results_converted_directly`: a DynamoDB result becomes plain values by each
  value's exact type, not by five questions to every value.
- `plain_values_compared_directly`: a string, binary or boolean value (every key lookup
  hashes and compares key values) is hashed and compared by its value, not by its cast,
  which asks it five questions first.
- `attribute_sizes_by_type`: a number, string or list is sized by its type, not by asking
  it seven questions (a Query sizes every item it returns twice).
- `values_deep_copied_directly`: a list or map value is deep-copied element by element by
  its own copier, not through `copy.deepcopy` for each element (list_append, undo log).
- `reserved_words_looked_up_by_name`: a name is looked up among DynamoDB's reserved
  words in a set, not compared with each of the 573 in turn (every path of every update).
- `update_paths_checked_against_reserved_words_directly`: each name of an update's paths
  is looked up in that set at once, not through three calls.
- `items_written_out_directly`: a stored item (a stream record's image, an answer's
  attributes) is written out as JSON in one pass, not by deep-copying each list and map and
  then every copied element again.
- `updates_that_create_write_one_record`: an UpdateItem that creates its item writes one
  INSERT stream record, as DynamoDB does (moto writes a key-only INSERT first).
- `stream_record_sizes_as_dynamodb_counts`: a stream record's SizeBytes is the size of its
  keys and images by DynamoDB's item size rules, as DynamoDB gives it, not the length of the
  record's `dynamodb` part written out as JSON text (and an item is written out only for an
  image the record holds).
- `stream_records_expire`: stream records older than 24 hours are trimmed, as DynamoDB
  Streams does; reading before the oldest record left is a TrimmedDataAccessException.
- `shard_iterators_expire`: a shard iterator expires 15 minutes after it was issued
  (ExpiredIteratorException), instead of being kept for ever.
- `kms_key_pairs_made_on_first_use`: a KMS key's asymmetric key pair is generated when a
  request first uses it (Sign, Verify, GetPublicKey), not on CreateKey: moto made an RSA
  2048 pair for every key, symmetric ones included, which never use it.
- `random_strings_drawn_at_once`: a random string (every response's request id) is drawn
  from one run of random bytes, not with one `choice` call per character.

`fixed_moto()` applies them all, and `stream_writes_announced`, which is not a fix: it wakes
the local runtime's stream pollers when a record is written. `discard_shard_iterator` and
`discard_stream_records` are the local runtime's own shortcuts, not fixes either: its stream
pollers never reuse an iterator, and are a stream's only readers, so they drop iterators and
handled records at once.

Each fix lives in a module named for what it changes: `locking` (atomic requests),
`bookkeeping` (model tracking, handler methods, random strings), `expressions` (update and
condition expressions), `expression_trees` (copying and walking an update's tree, its
clauses), `old_images` (an update's answer and prior copy), `transactions` (the undo log),
`item_images` (an item written out and copied), `keywords` (reserved words), `queries`
(partition orderings), `compact_items` (what a stored item holds once), `serialization`
(AttributeValues, result members, sizes), `handover` (answers handed to botocore as dicts),
`plain_requests` (DynamoDB requests without werkzeug), `dispatch` (a request's way around
the backend: its body read, its request id), `errors` (JSON errors written once),
`dynamo_types` (values compared without their cast), `conditions` (condition functions),
`routing` (its handler, found once per URL),
`streams` (stream records and shard iterators, and the local runtime's stream hooks),
`record_sizes` (a stream record's SizeBytes), `stream_answers` (GetRecords answers handed
over) and `kms`;
`items` reads and writes one stored item by its key for them, and `patching` puts each
patch on and takes it off. Callers import from this package only.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from mqless_cli.local.moto_fixes.bookkeeping import (
    data_models_untracked,
    handler_methods_listed_once,
    random_strings_drawn_at_once,
)
from mqless_cli.local.moto_fixes.compact_items import items_hold_keys_once
from mqless_cli.local.moto_fixes.conditions import contains_casts_elements_directly
from mqless_cli.local.moto_fixes.dispatch import (
    action_names_converted_once,
    backends_found_without_the_lock,
    request_attribute_values_read_directly,
    request_ids_not_searched_in_json,
    requests_normalized_directly,
    response_dates_formatted_once_a_second,
)
from mqless_cli.local.moto_fixes.dynamo_types import plain_values_compared_directly
from mqless_cli.local.moto_fixes.errors import json_errors_written_once
from mqless_cli.local.moto_fixes.expression_trees import (
    clauses_of_kept_parses_found_once,
    expression_passes_walk_with_kept_maps,
    resolving_hooks_ask_node_types_once,
    update_expression_trees_copied_node_by_node,
    update_passes_skip_what_they_cannot_act_on,
)
from mqless_cli.local.moto_fixes.expressions import (
    condition_expressions_lexed_once,
    condition_expressions_parsed_once,
    update_expression_spaces_removed_once,
    update_expression_structures_checked_at_the_root,
    update_expression_structures_checked_once,
    update_expressions_parsed_once,
)
from mqless_cli.local.moto_fixes.handover import answers_handed_over
from mqless_cli.local.moto_fixes.item_images import (
    items_written_out_directly,
    values_deep_copied_directly,
)
from mqless_cli.local.moto_fixes.keywords import (
    reserved_words_looked_up_by_name,
    update_paths_checked_against_reserved_words_directly,
)
from mqless_cli.local.moto_fixes.kms import kms_key_pairs_made_on_first_use
from mqless_cli.local.moto_fixes.locking import REQUEST_LOCK, LockStats, atomic_requests
from mqless_cli.local.moto_fixes.old_images import (
    update_old_images_copied_when_returned,
    update_prior_items_copied_when_streamed,
)
from mqless_cli.local.moto_fixes.plain_requests import dynamodb_requests_left_plain
from mqless_cli.local.moto_fixes.queries import (
    queries_read_one_partition,
    query_items_sized_once,
)
from mqless_cli.local.moto_fixes.record_sizes import stream_record_sizes_as_dynamodb_counts
from mqless_cli.local.moto_fixes.routing import requests_routed_once
from mqless_cli.local.moto_fixes.serialization import (
    attribute_maps_written_at_once,
    attribute_sizes_by_type,
    attribute_values_serialize_directly,
    dynamo_results_converted_directly,
    result_members_picked_by_kept_names,
)
from mqless_cli.local.moto_fixes.stream_answers import stream_records_handed_over
from mqless_cli.local.moto_fixes.streams import (
    SHARD_ITERATOR_LIFETIME,
    STREAM_RETENTION,
    STREAM_WRITES,
    discard_shard_iterator,
    discard_stream_records,
    shard_iterators_expire,
    stream_records_expire,
    stream_writes_announced,
    trim_stream,
    updates_that_create_write_one_record,
)
from mqless_cli.local.moto_fixes.transactions import transactions_undo_by_log
from mqless_cli.local.shared_patches import SharedPatches

__all__ = [
    "REQUEST_LOCK",
    "STREAM_RETENTION",
    "SHARD_ITERATOR_LIFETIME",
    "STREAM_WRITES",
    "LockStats",
    "atomic_requests",
    "action_names_converted_once",
    "answers_handed_over",
    "attribute_maps_written_at_once",
    "attribute_sizes_by_type",
    "backends_found_without_the_lock",
    "attribute_values_serialize_directly",
    "clauses_of_kept_parses_found_once",
    "condition_expressions_lexed_once",
    "condition_expressions_parsed_once",
    "contains_casts_elements_directly",
    "data_models_untracked",
    "discard_shard_iterator",
    "discard_stream_records",
    "dynamo_results_converted_directly",
    "dynamodb_requests_left_plain",
    "expression_passes_walk_with_kept_maps",
    "fixed_moto",
    "handler_methods_listed_once",
    "items_hold_keys_once",
    "items_written_out_directly",
    "json_errors_written_once",
    "kms_key_pairs_made_on_first_use",
    "plain_values_compared_directly",
    "queries_read_one_partition",
    "query_items_sized_once",
    "random_strings_drawn_at_once",
    "request_attribute_values_read_directly",
    "request_ids_not_searched_in_json",
    "requests_normalized_directly",
    "requests_routed_once",
    "response_dates_formatted_once_a_second",
    "reserved_words_looked_up_by_name",
    "resolving_hooks_ask_node_types_once",
    "result_members_picked_by_kept_names",
    "shard_iterators_expire",
    "stream_writes_announced",
    "stream_record_sizes_as_dynamodb_counts",
    "stream_records_handed_over",
    "stream_records_expire",
    "transactions_undo_by_log",
    "trim_stream",
    "update_expression_spaces_removed_once",
    "update_expression_structures_checked_at_the_root",
    "update_expression_structures_checked_once",
    "update_expression_trees_copied_node_by_node",
    "update_expressions_parsed_once",
    "update_old_images_copied_when_returned",
    "update_passes_skip_what_they_cannot_act_on",
    "update_paths_checked_against_reserved_words_directly",
    "update_prior_items_copied_when_streamed",
    "values_deep_copied_directly",
    "updates_that_create_write_one_record",
]

FIXES: tuple[Callable[[], Any], ...] = (
    requests_routed_once,  # first: the lock and the meter wrap it
    atomic_requests,
    data_models_untracked,
    handler_methods_listed_once,
    update_expressions_parsed_once,
    update_expression_structures_checked_once,
    update_expression_structures_checked_at_the_root,
    update_expression_trees_copied_node_by_node,
    expression_passes_walk_with_kept_maps,
    update_passes_skip_what_they_cannot_act_on,  # after the structure checks: wraps their init
    resolving_hooks_ask_node_types_once,
    clauses_of_kept_parses_found_once,
    update_old_images_copied_when_returned,
    condition_expressions_lexed_once,
    condition_expressions_parsed_once,
    contains_casts_elements_directly,
    transactions_undo_by_log,
    update_prior_items_copied_when_streamed,  # after the undo log: both set the models' copy
    items_hold_keys_once,  # before the query orderings: they keep the keys it shares
    queries_read_one_partition,
    query_items_sized_once,  # after it: wraps its Table.query
    attribute_values_serialize_directly,
    attribute_maps_written_at_once,
    result_members_picked_by_kept_names,
    request_attribute_values_read_directly,
    request_ids_not_searched_in_json,
    json_errors_written_once,
    requests_normalized_directly,
    dynamodb_requests_left_plain,  # after it: it builds werkzeug's request when asked
    answers_handed_over,
    stream_records_handed_over,  # after it: wraps its BaseResponse.serialized
    response_dates_formatted_once_a_second,
    backends_found_without_the_lock,
    action_names_converted_once,
    dynamo_results_converted_directly,
    attribute_sizes_by_type,
    plain_values_compared_directly,
    items_written_out_directly,
    values_deep_copied_directly,
    reserved_words_looked_up_by_name,
    update_paths_checked_against_reserved_words_directly,
    update_expression_spaces_removed_once,
    updates_that_create_write_one_record,
    stream_record_sizes_as_dynamodb_counts,
    stream_records_expire,
    shard_iterators_expire,
    kms_key_pairs_made_on_first_use,
    random_strings_drawn_at_once,
    stream_writes_announced,
)
"""What `fixed_moto` applies, in this order."""

_FIXED = SharedPatches(*FIXES)


def fixed_moto() -> AbstractContextManager[None]:
    """Every fix of this package while the block runs; blocks may overlap in any order.

    The patches go on when the first block starts and come off when the last one ends, so
    two local clouds (or a test's moto next to a runtime's) never undo each other's patches.
    """
    return _FIXED.applied()
