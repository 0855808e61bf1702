"""Update and condition expressions parsed, checked and lexed once per text.

Why it is long: each step moto takes with an expression's text (parse, structure checks,
spaces, lexing, condition trees) has its own fix here, each with the docstring that says
what moto does and why the answer stays the same; they share the kept parses and their
keys, and read best next to each other.
"""

from __future__ import annotations

import functools
import re
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from mqless_cli.local.moto_fixes.expression_trees import KEPT_PARSES
from mqless_cli.local.moto_fixes.patching import patched


@contextmanager
def update_expressions_parsed_once() -> Iterator[None]:
    """Keep the parse of each UpdateExpression text instead of parsing it on every use.

    Upstream behaviour: `UpdateExpressionParser.make` tokenizes and parses the expression
    each time, and an UpdateItem uses it twice (the response handler checks the names and
    values it uses, the backend validates and runs it): a seventh of an update's time.
    The tree is only read, or deep-copied by the validator before it is processed, so one
    parse per distinct text (the last 512) serves every request; a text that does not
    parse is refused as before, every time.
    """
    from moto.dynamodb.parsing import expressions

    parser: Any = expressions.UpdateExpressionParser  # type: ignore[attr-defined]
    original = parser.make.__func__

    @functools.lru_cache(maxsize=512)
    def parsed(expression: str) -> Any:
        return original(parser, expression)

    def make(cls: type, expression: str) -> Any:
        if cls is not parser or not isinstance(expression, str):
            return original(cls, expression)
        tree = parsed(expression)
        KEPT_PARSES.keep(tree)  # only read from now on: its clauses may be kept
        return tree

    with patched(parser, "make", classmethod(make)):
        yield


# ---- update expressions: structure checked once ---------------------------------------------

# as many as the parse cache keeps: each kept tree holds ~16 KB, and the broker writes new
# texts as long as it runs (list positions are part of a text), ~66 per 1,000 messages
_STRUCTURES_KEPT = 512  # (expression, names, key attributes) whose structure passed


class _PassedStructures:
    """The (expression tree id, names, key attributes) whose structure checks passed (the
    last `_STRUCTURES_KEPT`), each kept with its tree so that the tree's id stays its own."""

    def __init__(self) -> None:
        self._passed: dict[tuple[Any, ...], Any] = {}
        self._lock = threading.Lock()

    def __contains__(self, key: tuple[Any, ...]) -> bool:
        return key in self._passed

    def add(self, key: tuple[Any, ...], tree: Any) -> None:
        with self._lock:
            if len(self._passed) >= _STRUCTURES_KEPT:
                self._passed.clear()
            self._passed[key] = tree


def _structure_key(validator: Any, expression: Any) -> tuple[Any, ...] | None:
    """What an UpdateExpressionValidator's structure checks read: the tree (by id), the
    ExpressionAttributeNames and the table's key attributes; None if they are not there."""
    try:
        names = tuple(sorted((validator.expression_attribute_names or {}).items()))
        keys = tuple(validator.table.table_key_attrs)
        return (id(expression), names, keys)
    except (AttributeError, TypeError):  # not what this fix knows: validate as before
        return None


def _validated(
    validator: Any,
    structural: tuple[type, ...],
    passed: _PassedStructures,
    original_validate: Callable[[Any], Any],
    idle: Callable[[Any, Any, Any], bool] = lambda processor, node, validator: False,
) -> Any:
    """`UpdateExpressionValidator.validate`, skipping the `structural` checks where they
    have passed for the same key before, and each pass that is `idle` on the tree."""
    key = getattr(validator, "_structure_key", None)
    processors = validator.processors
    first = [isinstance(p, structural) for p in processors]
    # the structure checks must come first (they do in moto 5.2): else as upstream
    if key is None or first != sorted(first, reverse=True):
        return original_validate(validator)
    known = key in passed
    node = validator.node_to_validate
    for processor, checks_structure in zip(processors, first, strict=True):
        if checks_structure:
            if known:
                continue
        elif not known:  # every structure check before this one passed
            passed.add(key, validator._structure_tree)
            known = True
        if not checks_structure and idle(processor, node, validator):
            continue
        node = processor.traverse(node)
    return node


def _has_functions(tree: Any, function_class: type) -> bool:
    """Whether a parsed UpdateExpression calls a function (kept on the parse: it is only read)."""
    kept = tree.__dict__.get("_mqless_has_functions")
    if kept is None:
        pending, kept = [tree], False
        while pending and not kept:
            node = pending.pop()
            kept = isinstance(node, function_class)
            pending.extend(c for c in node.children or () if hasattr(c, "children"))
        tree.__dict__["_mqless_has_functions"] = kept
    return bool(kept)


def _set_targets(node: Any, set_action: type) -> list[Any]:
    """The attribute each SET action of a validated tree assigns, read as moto's
    `TypeMismatchValidator` and `EmptyStringKeyValueValidator` read it."""
    return [a.children[0].children[0].children[0] for a in node.find_clauses([set_action])]


def _idle_passes() -> Callable[[Any, Any, Any], bool]:
    """Which of moto's value passes cannot act on a tree: `idle(processor, node, validator)`.

    Four are skipped on a tree they cannot act on (each walks the whole tree):
    `UpdateExpressionFunctionEvaluator` when the expression calls no function,
    `TypeMismatchValidator` and `EmptyStringKeyValueValidator` when no SET action assigns
    an attribute of the table's definitions or keys (read from the action as those passes
    read it), `NoneExistingPathChecker` when the path resolving pass before it resolved no
    path to a missing attribute (it makes the only NoneExistingPath nodes that pass
    refuses). Those are the only nodes they act on, and acting is all they can do: change
    a node or refuse the update.
    """
    from moto.dynamodb.parsing import ast_nodes, validators

    function_class = ast_nodes.UpdateExpressionFunction  # type: ignore[attr-defined]
    set_action = ast_nodes.UpdateExpressionSetAction  # type: ignore[attr-defined]

    def idle(processor: Any, node: Any, validator: Any) -> bool:
        kind = type(processor)
        if kind is validators.UpdateExpressionFunctionEvaluator:
            return not _has_functions(validator._structure_tree, function_class)
        if kind is validators.TypeMismatchValidator:
            defined = [d["AttributeName"] for d in processor.key_attributes_type]
            return not any(t in defined for t in _set_targets(node, set_action))
        if kind is validators.EmptyStringKeyValueValidator:
            keys = list(processor.key_attributes)
            return not any(t in keys for t in _set_targets(node, set_action))
        if kind is validators.NoneExistingPathChecker:
            return _no_missing_paths_made(validator.processors, processor)
        return False

    return idle


def _no_missing_paths_made(processors: list[Any], checker: Any) -> bool:
    """Whether the path resolving pass ran before `checker` and put no NoneExistingPath in
    the tree (the only pass that makes one: `_noting_missing_paths`)."""
    from moto.dynamodb.parsing import validators

    resolving = validators.ExpressionAttributeResolvingProcessor
    before = processors[: processors.index(checker)]
    resolvers = [p for p in before if type(p) is resolving]
    return bool(resolvers) and not any(p.__dict__.get(_MADE_MISSING) for p in resolvers)


_MADE_MISSING = "_mqless_made_missing_paths"


def _noting_missing_paths(process: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """`ExpressionAttributeResolvingProcessor.process_expression_path_node`, noting on the
    pass when it puts a NoneExistingPath in the tree."""
    from moto.dynamodb.parsing.ast_nodes import NoneExistingPath  # type: ignore[attr-defined]

    def process_expression_path_node(self: Any, node: Any) -> Any:
        result = process(self, node)
        if isinstance(result, NoneExistingPath):
            self.__dict__[_MADE_MISSING] = True
        return result

    return process_expression_path_node


@contextmanager
def update_expression_structures_checked_once() -> Iterator[None]:
    """Check an UpdateExpression's structure once per expression, names and table keys.

    Upstream behaviour: every UpdateItem (twice when it creates its item) runs the
    validator's nine passes over a copy of the expression's tree. The first three only
    check its structure: one SET/ADD/REMOVE clause each (`ActionCountValidator`, which
    looks for clauses again at every nested node: quadratic in the number of actions),
    no overlapping paths (`OverlappingPathsValidator`), no key attribute updated
    (`UpdateHashRangeKeyValidator`). They read only the tree, the ExpressionAttributeNames
    and the table's key attributes, and change nothing; for the broker's segment updates
    (ten or more actions) they were a seventh of all the CPU `mqless dev` spent.

    Here, once they have passed for a tree (the parse `update_expressions_parsed_once`
    keeps for its text), names and key attributes, later validations of the same skip
    them; the passes that read values and the item run every time. An expression whose
    structure fails is checked (and refused) every time, as before.

    And value passes that cannot act on a tree are skipped (`_idle_passes`).
    """
    from moto.dynamodb.parsing import validators

    structural = (
        validators.ActionCountValidator,
        validators.OverlappingPathsValidator,
        validators.UpdateHashRangeKeyValidator,
    )
    cls: Any = validators.UpdateExpressionValidator
    original_init, original_validate = cls.__init__, cls.validate
    passed = _PassedStructures()
    idle = _idle_passes()

    def init(self: Any, expression: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, expression, *args, **kwargs)
        self._structure_key = _structure_key(self, expression)
        self._structure_tree = expression

    def validate(self: Any) -> Any:
        return _validated(self, structural, passed, original_validate, idle)

    resolver: Any = validators.ExpressionAttributeResolvingProcessor
    noting = _noting_missing_paths(resolver.process_expression_path_node)
    with (
        patched(cls, "__init__", init),
        patched(cls, "validate", validate),
        patched(resolver, "process_expression_path_node", noting),
    ):
        yield


# ---- update expressions: spaces around operators removed once per text ---------------------


class _SubstitutionsKept:
    """`re` for moto.dynamodb.models: `sub` of text by text gives back the result it gave
    for the same three texts before (the last 512); everything else is `re`'s own."""

    def __getattr__(self, name: str) -> Any:
        return getattr(re, name)

    @staticmethod
    @functools.lru_cache(maxsize=512)
    def _substituted(pattern: str, repl: str, string: str) -> str:
        return re.sub(pattern, repl, string)

    def sub(self, pattern: Any, repl: Any, string: Any, count: int = 0, flags: int = 0) -> Any:
        if count == 0 and flags == 0 and type(pattern) is type(repl) is type(string) is str:
            return self._substituted(pattern, repl, string)
        return re.sub(pattern, repl, string, count=count, flags=flags)


@contextmanager
def update_expression_spaces_removed_once() -> Iterator[None]:
    """Remove the spaces around an UpdateExpression's operators once per text.

    Upstream behaviour: `DynamoDBBackend.update_item` rewrites the expression text with
    `re.sub(r"\\s*([=\\+-])\\s*", ...)` on every UpdateItem (the pattern looked up in re's
    cache, the text scanned, the result built): a fortieth of an update for the broker's
    segment updates. The result depends on the three texts alone, so here moto's models
    module sees an `re` whose `sub` keeps the last 512 results of text arguments
    (`_SubstitutionsKept`); any other call is `re.sub`'s.
    """
    from moto.dynamodb import models

    with patched(models, "re", _SubstitutionsKept()):
        yield


# ---- update expressions: structure checked at the root -------------------------------------


def _found_everywhere(root: Any, kinds: tuple[type, ...], node_class: Any) -> bool:
    """Whether every node of `kinds` in the tree under `root` is among those the root's own
    `find_clauses(kinds)` finds: then what any node of the tree finds is part of that."""
    found = {id(n) for n in root.find_clauses(list(kinds))}
    pending: list[Any] = list(root.children or ())
    everywhere = 0
    while pending:
        node = pending.pop()
        if isinstance(node, node_class):
            if type(node) in kinds:
                if id(node) not in found:
                    return False
                everywhere += 1
            pending.extend(node.children or ())
    return everywhere == len(found)


def _checked_at_the_root(kinds: Callable[[], tuple[type, ...]], check: str) -> Callable[..., Any]:
    """`traverse` of a structure check that runs `check` on the root alone when that decides."""
    from moto.dynamodb.parsing.ast_nodes import (  # type: ignore[attr-defined]
        DepthFirstTraverser,
        Node,
        UpdateExpression,
    )

    original = DepthFirstTraverser.traverse

    def traverse(self: Any, node: Any) -> Any:
        looked_for = kinds()
        if (
            type(node) is not UpdateExpression
            or node.parent is not None
            or not _found_everywhere(node, looked_for, Node)
        ):
            return original(self, node)
        try:
            getattr(self, check)(node)
        except Exception:  # refused: find the first node moto refuses at, as moto does
            return original(self, node)
        return node

    return traverse


@contextmanager
def update_expression_structures_checked_at_the_root() -> Iterator[None]:
    """Check an UpdateExpression's clause counts and overlapping paths once, at its root.

    Upstream behaviour: `ActionCountValidator` and `OverlappingPathsValidator` run their
    check at every UpdateExpression node of the tree, bottom up, and each check looks for
    clauses (or actions) in the node's whole subtree again: an expression of n actions
    nests n action lists, so it is quadratic (thirty actions: a few hundred walks). The
    broker writes segment updates of up to thirty actions, a new text for each range of
    slots, each checked in full the first time (`update_expression_structures_checked_once`
    keeps what passed).

    Both checks refuse a node for what it finds (two clauses of a kind, two paths that
    overlap or repeat): what a node finds is part of what the root finds when every such
    clause in the tree is among the root's (checked here in one walk), and what passes for
    the root passes for each part. So the root is checked alone; when it is refused, or
    the tree is not a whole parsed expression, the check runs at every node as before,
    refusing at the same node with the same error.
    """
    from moto.dynamodb.parsing import ast_nodes, validators

    nodes: Any = ast_nodes
    clauses = (
        nodes.UpdateExpressionAddClause,
        nodes.UpdateExpressionRemoveClause,
        nodes.UpdateExpressionSetClause,
    )
    actions = (
        nodes.UpdateExpressionSetAction,
        nodes.UpdateExpressionAddAction,
        nodes.UpdateExpressionRemoveAction,
        nodes.UpdateExpressionDeleteAction,
    )
    counts = _checked_at_the_root(lambda: clauses, "verify_action_counts")
    overlaps = _checked_at_the_root(lambda: actions, "check_for_overlapping_paths")
    with (
        patched(validators.ActionCountValidator, "traverse", counts),
        patched(validators.OverlappingPathsValidator, "traverse", overlaps),
    ):
        yield


# ---- condition expressions lexed once ------------------------------------------------------


@contextmanager
def condition_expressions_lexed_once() -> Iterator[None]:
    """Keep the tokens of each ConditionExpression text instead of lexing it on every use.

    Upstream behaviour: `ConditionExpressionParser.parse` lexes the expression text on
    every conditional write and transaction item, trying a list of regular expressions at
    each position: half of the parse, about a twentieth of `mqless dev`'s CPU in the HTTP
    bench. The tokens depend on the text alone (names and values are looked up in later
    stages), so the last 512 distinct texts keep theirs; each use gets new token nodes
    (their `children` lists are fresh), and a text that does not lex is refused as before,
    every time.
    """
    from moto.dynamodb.comparisons import ConditionExpressionParser

    original = ConditionExpressionParser._lex_condition_expression

    @functools.lru_cache(maxsize=512)
    def tokens(expression: str) -> tuple[tuple[Any, Any, Any, Any], ...]:
        lexed = original(ConditionExpressionParser(expression, None, None))
        return tuple((n.nonterminal, n.kind, n.text, n.value) for n in lexed)

    def lex(self: ConditionExpressionParser) -> Any:
        expression = self.condition_expression
        if not isinstance(expression, str):
            return original(self)
        node = self.Node
        return deque(
            node(nonterminal=nonterminal, kind=kind, text=text, value=value, children=[])
            for nonterminal, kind, text, value in tokens(expression)
        )

    with patched(ConditionExpressionParser, "_lex_condition_expression", lex):
        yield


# ---- condition expressions parsed once -----------------------------------------------------

# as many as the update parses above (memory grows with distinct texts, not messages)
_CONDITIONS_KEPT = 512  # (text, names, value placeholders) whose parse is kept


_ParsedCondition = tuple[Any, tuple[str, ...], tuple[str, ...]]
"""A condition's syntax tree, and the names and values it uses."""


class _ParsedConditions:
    """The syntax trees of the condition texts parsed (the last `_CONDITIONS_KEPT`), with
    the names and values each uses, by (text, ExpressionAttributeNames, value placeholders)."""

    def __init__(self) -> None:
        self._trees: dict[tuple[Any, ...], _ParsedCondition] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> _ParsedCondition | None:
        return self._trees.get(key)

    def add(self, key: tuple[Any, ...], parsed: _ParsedCondition) -> None:
        with self._lock:
            if len(self._trees) >= _CONDITIONS_KEPT:
                self._trees.clear()
            self._trees[key] = parsed


def _condition_key(parser: Any) -> tuple[Any, ...] | None:
    """What a condition's syntax tree depends on: its text, its ExpressionAttributeNames and
    which value placeholders are defined (not their values); None if they are not plain."""
    text = parser.condition_expression
    names = parser.expression_attribute_names
    values = parser.expression_attribute_values
    if type(text) is not str or not text:
        return None
    if names is not None and not (
        type(names) is dict and all(type(k) is str and type(v) is str for k, v in names.items())
    ):
        return None
    if values is not None and type(values) is not dict:
        return None
    return (
        text,
        None if names is None else tuple(sorted(names.items())),
        None if values is None else frozenset(values),
    )


def _syntax_tree(parser: Any) -> _ParsedCondition:
    """`ConditionExpressionParser.parse` up to its syntax tree (moto 5.2's own stages, in its
    order, with its errors): the tree and the names and values it uses."""
    nodes = parser._lex_condition_expression()
    nodes = parser._parse_paths(nodes)
    nodes = parser._apply_functions(nodes)
    nodes = parser._apply_comparator(nodes)
    nodes = parser._apply_in(nodes)
    nodes = parser._apply_between(nodes)
    nodes = parser._apply_parens_and_booleans(nodes)
    node = nodes[0]
    parser._assert_no_redundant_parentheses(node)
    return node, tuple(parser._find_literals(node)), tuple(parser._find_expr_attr_values(node))


@contextmanager
def condition_expressions_parsed_once() -> Iterator[None]:
    """Keep the syntax tree of each condition text instead of parsing it on every use.

    Upstream behaviour: `ConditionExpressionParser.parse` runs seven stages over the tokens of
    the text (paths, functions, comparators, IN, BETWEEN, parentheses and booleans) on every
    use, and a conditional UpdateItem parses its condition twice (the response handler for
    the names and values it uses, the backend to evaluate it). For the broker's segment
    updates (twenty comparisons) that was a fifth of an update's time.

    The tree depends on the text, the ExpressionAttributeNames (resolved into it) and which
    value placeholders are defined (an undefined one is refused); the values themselves are
    only carried along to the conditions built from it. So the tree is kept per text, names
    and placeholders, and each use builds its conditions from it with moto's own
    `_make_op_condition`, every value placeholder taking this request's value. A text that
    does not parse is refused as before, every time; an expression whose names or values are
    not plain dicts of text is parsed as before.
    """
    from moto.dynamodb.comparisons import AttributeValue, ConditionExpressionParser

    original_parse = ConditionExpressionParser.parse
    original_operand = ConditionExpressionParser._make_operand
    value_kind = ConditionExpressionParser.Kind.EXPRESSION_ATTRIBUTE_VALUE
    trees = _ParsedConditions()

    def parse(self: Any) -> Any:
        key = _condition_key(self)
        if key is None:
            return original_parse(self)
        parsed = trees.get(key)
        if parsed is None:
            parsed = _syntax_tree(self)
            trees.add(key, parsed)
        node, names_found, values_found = parsed
        self.expr_attr_names_found.extend(names_found)
        self.expr_attr_values_found.extend(values_found)
        return self._make_op_condition(node)

    def make_operand(self: Any, node: Any) -> Any:
        if node.kind == value_kind and type(self.expression_attribute_values) is dict:
            # this request's value, not the one the kept tree was parsed with
            return AttributeValue(self.expression_attribute_values[node.text])
        return original_operand(self, node)

    with (
        patched(ConditionExpressionParser, "parse", parse),
        patched(ConditionExpressionParser, "_make_operand", make_operand),
    ):
        yield
