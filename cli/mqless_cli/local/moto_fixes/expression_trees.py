"""Update expression trees copied node by node, walked without asking again per node what
each pass processes (nor into subtrees it cannot act on), and the clauses of a kept parse
found once.

Why it is long: these fixes all work on the trees `KEPT_PARSES` keeps (their copy
programs, clauses and node kinds) and on one walk (`_KeptMapWalk`); split apart, each
would reach into the others' state.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mqless_cli.local.moto_fixes.patching import patched

_SHARED = (str, int, float, bool, bytes, type(None))
"""Values a copy may share with its original: nothing can change them."""


def copied_tree(root: Any, node_class: type) -> Any:
    """A copy of an expression tree as `copy.deepcopy` makes it, built node by node.

    A node's state is its `type` (text), its `children` (nodes, or the text and numbers
    of a leaf) and its `parent`; the copy's nodes point at their copied parents, a node
    reached twice is copied once, and any other value is deep-copied as before."""
    memo: dict[int, Any] = {}

    def copied(node: Any, parent: Any) -> Any:
        done = memo.get(id(node))
        if done is not None:
            return done
        state = getattr(node, "__dict__", None)
        if state is None:
            return copy.deepcopy(node, memo)
        new = object.__new__(type(node))
        memo[id(node)] = new
        fresh: dict[str, Any] = {}
        for name, value in state.items():
            if name == "parent":
                fresh[name] = parent
            elif name == "children" and type(value) is list:
                fresh[name] = [
                    copied(child, new)
                    if isinstance(child, node_class)
                    else child
                    if isinstance(child, _SHARED)
                    else copy.deepcopy(child, memo)
                    for child in value
                ]
            else:
                fresh[name] = value if isinstance(value, _SHARED) else copy.deepcopy(value, memo)
        new.__dict__.update(fresh)
        return new

    return copied(root, None)


_Step = tuple[type, str, "list[Any] | None", tuple[tuple[int, int], ...]]
"""One node of a copy program: its class, its `type` text, its children list (None: no
list) with the values shared as they are and None where a node goes, and those places,
each with the node made earlier (by its place in the program) that goes there."""

_NODE_STATE = ("type", "children", "parent")


def copy_program(root: Any, node_class: type) -> list[_Step] | None:
    """How to make `copied_tree(root)` again and again: its nodes children first, each
    with what `copied_tree` gives it. None for a tree it does not describe (a node with
    other state, reached twice, or a child value it would deep-copy)."""
    program: list[_Step] = []
    placed: dict[int, int] = {}

    def place(node: Any) -> int:
        state = getattr(node, "__dict__", None)
        if id(node) in placed or state is None or tuple(state) != _NODE_STATE:
            raise ValueError
        children, text = state["children"], state["type"]
        if (children is not None and type(children) is not list) or type(text) is not str:
            raise ValueError
        template: list[Any] = []
        places: list[tuple[int, int]] = []
        for at, child in enumerate(children or ()):
            if isinstance(child, node_class):
                places.append((at, place(child)))
                template.append(None)
            elif type(child) in _SHARED:
                template.append(child)
            else:
                raise ValueError
        placed[id(node)] = len(program)
        program.append((type(node), text, None if children is None else template, tuple(places)))
        return placed[id(node)]

    try:
        place(root)
    except (ValueError, RecursionError):
        return None
    return program


def run_copy_program(program: list[_Step]) -> Any:
    """A new tree made by `program` (`copy_program`): the root, its parent None."""
    made: list[Any] = []
    new_node, keep = object.__new__, made.append
    for cls, text, template, places in program:
        node: Any = new_node(cls)
        children = None if template is None else template.copy()
        for at, index in places:
            child = made[index]
            children[at] = child  # type: ignore[index]
            child.parent = node
        node.__dict__ = {"type": text, "children": children, "parent": None}
        keep(node)
    return made[-1]


def _update_actions(nodes: Any) -> tuple[type, ...]:
    """moto's four UpdateExpression action node classes (SET, REMOVE, DELETE, ADD)."""
    return (
        nodes.UpdateExpressionSetAction,
        nodes.UpdateExpressionRemoveAction,
        nodes.UpdateExpressionDeleteAction,
        nodes.UpdateExpressionAddAction,
    )


@contextmanager
def update_expression_trees_copied_node_by_node() -> Iterator[None]:
    """Copy an UpdateExpression's tree for validation node by node, not with `deepcopy`.

    Upstream behaviour: `Validator.__init__` deep-copies the parsed tree on every
    UpdateItem (its passes replace nodes in place, so the parse kept for the text must stay
    as it was). `copy.deepcopy` asks each node and value how to copy itself and keeps a
    memo of everything; for the broker's segment updates (ten or more actions, a few
    hundred nodes) that was a twelfth of `mqless dev`'s CPU in the HTTP bench. The copy
    here is the same tree (`copied_tree`): same classes, same children, parents pointing
    into the copy. A tree whose root has a parent, and every other value `deepcopy` is
    asked for (`list_append`'s operand), is deep-copied as before. The copy of a kept
    parse (`KEPT_PARSES`) is made from a program worked out once (`copy_program`): its
    nodes in the order `copied_tree` finishes them, each with its class and children.
    """
    from moto.dynamodb.parsing import validators
    from moto.dynamodb.parsing.ast_nodes import Node  # type: ignore[attr-defined]

    original = validators.deepcopy  # type: ignore[attr-defined]

    def deepcopy(value: Any, memo: Any = None) -> Any:
        if memo is None and isinstance(value, Node) and value.parent is None:
            program = KEPT_PARSES.copy_program(value, Node)
            return copied_tree(value, Node) if program is None else run_copy_program(program)
        return original(value, memo)

    with patched(validators, "deepcopy", deepcopy):
        yield


_KEPT_MAP = "_mqless_map"
"""Where a pass keeps its processing map, as (class, processor) pairs."""


def _processor_for(traverser: Any, kind: type) -> Any:
    """Which of a pass's processors takes nodes of `kind` (None: none does): the first in
    its processing map whose class matches, kept on the pass with the map itself."""
    kept: dict[str, Any] = traverser.__dict__
    chosen: dict[type, Any] | None = kept.get("_mqless_processors")
    if chosen is None:
        chosen = kept["_mqless_processors"] = {}
        if _KEPT_MAP not in kept:  # (`_ActedOn` may have built it)
            kept[_KEPT_MAP] = tuple(traverser._processing_map().items())
    if kind not in chosen:
        chosen[kind] = next((step for cls, step in kept[_KEPT_MAP] if issubclass(kind, cls)), None)
    return chosen[kind]


SKIPPED_KINDS = "_mqless_skipped_kinds"
"""Where a pass holds the node classes whose subtrees it cannot act on (set by
`update_passes_skip_what_they_cannot_act_on`): the walk does not enter them."""


class _KeptMapWalk:
    """`DepthFirstTraverser.traverse_node_recursively`, asking what is a node and what
    processes it once per node type (`node_class` is an ABC: its isinstance is slow)."""

    def __init__(self, node_class: type, no_hook: Any) -> None:
        self._node_class = node_class
        self._no_hook = no_hook
        self._is_node: dict[type, bool] = {}

    def traverse(self, traverser: Any, node: Any, child_id: int = -1) -> Any:
        kind = type(node)
        node_like = self._is_node.get(kind)
        if node_like is None:
            node_like = self._is_node[kind] = isinstance(node, self._node_class)
        if not node_like:
            return node
        parent_node = node.parent
        children = node.children
        if children is not None:
            hooked = type(traverser).pre_processing_of_child is not self._no_hook
            skip = traverser.__dict__.get(SKIPPED_KINDS, ())
            for i, child in enumerate(children):
                if hooked:
                    traverser.pre_processing_of_child(node, i)
                if type(child) in skip:  # nothing under it the pass acts on
                    continue
                self.traverse(traverser, child, i)  # no pass overrides the walk
        step = _processor_for(traverser, kind)
        if step is not None:
            node = step(node)
            node.parent = parent_node
            if parent_node:
                parent_node.children[child_id] = node
        return node


@contextmanager
def expression_passes_walk_with_kept_maps() -> Iterator[None]:
    """Walk an expression tree asking each pass once per node type what it processes.

    Upstream behaviour: `DepthFirstTraverser.traverse_node_recursively` builds the pass's
    processing map (a new dict of bound methods) for every node it visits, and again to
    process a node, and calls `pre_processing_of_child` (a no-op but in one pass) for
    every child; an UpdateItem runs seven such passes over its tree. Here each pass keeps
    its map, and which of its processors (if any) takes each node type: the first whose
    class matches, as upstream picks it; the hook is called where a pass defines it.
    Nodes are visited, processed and put in their parents in the same order as before.
    """
    from moto.dynamodb.parsing.ast_nodes import (  # type: ignore[attr-defined]
        DepthFirstTraverser,
        Node,
    )

    walk = _KeptMapWalk(Node, DepthFirstTraverser.pre_processing_of_child)

    def traverse_node_recursively(self: Any, node: Any, child_id: int = -1) -> Any:
        return walk.traverse(self, node, child_id)

    with patched(DepthFirstTraverser, "traverse_node_recursively", traverse_node_recursively):
        yield


# ---- clauses of a kept parse found once ----------------------------------------------------

_PARSES_KEPT = 512  # as many as `update_expressions_parsed_once` keeps


class _KeptParses:
    """The parsed UpdateExpressions kept for their text (by id, each held with its tree so
    that the id stays its own), with the clauses found in each so far, by clause types,
    and its copy program (`copy_program`)."""

    def __init__(self) -> None:
        self._kept: dict[int, tuple[Any, dict[Any, Any]]] = {}
        self._programs: dict[int, tuple[Any, list[_Step] | None]] = {}
        self._program_nodes = 0
        self._kinds: dict[int, tuple[Any, dict[type, frozenset[type]], dict[Any, Any]]] = {}
        self._lock = threading.Lock()

    def keep(self, tree: Any) -> None:
        """Note `tree` as a kept parse: it is only read from now on."""
        entry = self._kept.get(id(tree))
        if entry is not None and entry[0] is tree:
            return
        with self._lock:
            if len(self._kept) >= _PARSES_KEPT:
                self._kept.clear()
            self._kept[id(tree)] = (tree, {})

    def clauses(self, tree: Any) -> dict[Any, Any] | None:
        """The clauses found in `tree` so far (by clause types), if it is a kept parse."""
        entry = self._kept.get(id(tree))
        return entry[1] if entry is not None and entry[0] is tree else None

    def copy_program(self, tree: Any, node_class: type) -> list[_Step] | None:
        """The copy program of `tree` (worked out on first use), if it is a kept parse.
        Programs are kept for `_PROGRAM_NODES_KEPT` nodes in all (then all dropped)."""
        if self.clauses(tree) is None:
            return None
        kept = self._programs.get(id(tree))
        if kept is not None and kept[0] is tree:
            return kept[1]
        program = copy_program(tree, node_class)
        size = len(program or ())
        with self._lock:
            if self._program_nodes + size > _PROGRAM_NODES_KEPT:
                self._programs.clear()
                self._program_nodes = 0
            self._programs[id(tree)] = (tree, program)
            self._program_nodes += size
        return program

    def skipped_kinds(
        self, tree: Any, node_class: type, acted_on: tuple[type, ...], outputs: frozenset[type]
    ) -> frozenset[type] | None:
        """The node classes of `tree` (a kept parse), and `outputs`, under whose instances
        no class of a copy of the tree is a subclass of `acted_on`, after passes put nodes of
        `outputs` in it; None if the tree is not a kept parse."""
        if self.clauses(tree) is None:
            return None
        entry = self._kinds.get(id(tree))
        if entry is None or entry[0] is not tree:
            entry = (tree, subtree_kinds(tree, node_class), {})
            with self._lock:
                if len(self._kinds) >= _PARSES_KEPT:
                    self._kinds.clear()
                self._kinds[id(tree)] = entry
        kinds, skips = entry[1], entry[2]
        skipped = skips.get((acted_on, outputs))
        if skipped is None:
            if any(issubclass(k, acted_on) for k in outputs):
                skipped = frozenset()
            else:
                skipped = outputs.union(
                    kind
                    for kind, under in kinds.items()
                    if not any(issubclass(k, acted_on) for k in under)
                )
            skips[(acted_on, outputs)] = skipped
        return skipped


def subtree_kinds(tree: Any, node_class: type) -> dict[type, frozenset[type]]:
    """Each node class in `tree`, with every class found under its instances (itself too)."""
    kinds: dict[type, set[type]] = {}

    def under(node: Any) -> set[type]:
        found = {type(node)}
        for child in node.children or ():
            if isinstance(child, node_class):
                found |= under(child)
        kinds.setdefault(type(node), set()).update(found)
        return found

    under(tree)
    return {kind: frozenset(found) for kind, found in kinds.items()}


_PROGRAM_NODES_KEPT = 20_000
"""Nodes of copy programs kept (~400 bytes each: ~8 MB). A FIFO queue's updates make a
text per segment slot count, some of a thousand nodes; HTTP's and STOMP's are few."""


KEPT_PARSES = _KeptParses()
"""The parses `update_expressions_parsed_once` hands out (`clauses_of_kept_parses_found_once`
keeps their clauses)."""


@contextmanager
def clauses_of_kept_parses_found_once() -> Iterator[None]:
    """Find the clauses of a kept UpdateExpression parse once per clause types.

    Upstream behaviour: `DynamoHandler.update_item` walks the parsed expression twice on
    every UpdateItem (`Node.find_clauses`) for the ExpressionAttributeNames and values it
    uses, to refuse those defined but unused. With `update_expressions_parsed_once` the
    parse of a text is kept and only read (the validator works on a copy), so what it
    holds never changes: here the nodes found in a kept parse (`KEPT_PARSES`) are kept
    with it, per clause types, and each call gets a new list of them. Any other tree (the
    validator's copy, which its passes change) is walked as before.
    """
    from moto.dynamodb.parsing.ast_nodes import Node  # type: ignore[attr-defined]

    original = Node.find_clauses

    def find_clauses(self: Any, clause_types: Any) -> Any:
        found = KEPT_PARSES.clauses(self)
        if found is None:
            return original(self, clause_types)
        kinds = tuple(clause_types)
        clauses = found.get(kinds)
        if clauses is None:
            clauses = found[kinds] = list(original(self, clause_types))
        return list(clauses)

    with patched(Node, "find_clauses", find_clauses):
        yield


# ---- the path resolving pass's hook: what an action is, asked once per node type -----------


@contextmanager
def resolving_hooks_ask_node_types_once() -> Iterator[None]:
    """Tell an update's actions from other nodes by type, once per type, in the hook of
    the path resolving pass.

    Upstream behaviour: `ExpressionAttributeResolvingProcessor.pre_processing_of_child`
    runs before each child of each node of an UpdateItem's tree, and asks `isinstance` of
    the node against four action classes (ABCs: each answer goes through ABCMeta's
    check), to resolve the paths of an action's operands and not its target: a seventh of
    validating the broker's segment updates. Here the answer is kept per node type (a
    class is an action or not for good); the pass's state changes as before.
    """
    from moto.dynamodb.parsing import ast_nodes, validators

    resolver: Any = validators.ExpressionAttributeResolvingProcessor
    nodes: Any = ast_nodes
    actions = _update_actions(nodes)
    is_action: dict[type, bool] = {}

    def pre_processing_of_child(self: Any, parent_node: Any, child_id: int) -> None:
        kind = type(parent_node)
        action = is_action.get(kind)
        if action is None:
            action = is_action[kind] = isinstance(parent_node, actions)
        if action:
            self.resolving = child_id != 0

    with patched(resolver, "pre_processing_of_child", pre_processing_of_child):
        yield


# ---- update passes skip the subtrees they cannot act on -------------------------------------


class _ActedOn:
    """The node classes each of moto's update passes processes, and those its hook acts on
    (`hooked`, by pass class), listed once per pass class."""

    def __init__(self, hooked: dict[type, tuple[type, ...]]) -> None:
        self._hooked = hooked
        self._acted_on: dict[type, tuple[type, ...]] = {}

    def __call__(self, processor: Any) -> tuple[type, ...] | None:
        """What `processor` acts on; None if it is not a pass this fix knows."""
        kind = type(processor)
        acted_on = self._acted_on.get(kind)
        if acted_on is None:
            hooked = self._hooked.get(kind)
            if hooked is None:
                return None
            # moto's passes map the same classes whatever their instance holds; the walk
            # takes this instance's map as it is (`_processor_for`)
            steps = processor.__dict__[_KEPT_MAP] = tuple(processor._processing_map().items())
            acted_on = self._acted_on[kind] = tuple(cls for cls, _ in steps) + hooked
        return acted_on


@contextmanager
def update_passes_skip_what_they_cannot_act_on() -> Iterator[None]:
    """Each pass of an UpdateItem's validation enters only the subtrees it can act on.

    Upstream behaviour: `UpdateExpressionValidator` runs its passes (values, paths,
    functions, missing paths, operations, ...) over the whole tree, each visiting every
    node, though each acts on nodes of one or two classes only: the value pass on
    `:placeholders`, the operations pass on values; neither on the path an action sets
    (`u[3]`: three nodes of each of the broker's ~thirty actions).

    Here, for the copy of a kept parse (`KEPT_PARSES`), each of moto's passes gets the
    node classes under whose instances (in the parse) no class it processes is found, nor
    one its hook acts on (an action, for the path resolving pass), nor one that passes
    put in the tree (`DDBTypedValue`, `NoneExistingPath`; every other node a pass returns
    comes from the subtree it replaces, so it was under the same nodes): the walk
    (`expression_passes_walk_with_kept_maps`) does not enter them. What it leaves out it
    would have visited without acting, so every node is processed, and every hook called,
    as before; any other pass, or tree, is walked whole.

    Why it is long: it lists moto's ten update passes, each checked to keep the hook moto
    gives it, and this docstring says why leaving subtrees out changes nothing.
    """
    from moto.dynamodb.parsing import ast_nodes, validators
    from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser, Node  # type: ignore[attr-defined]

    nodes: Any = ast_nodes
    actions = _update_actions(nodes)
    outputs = frozenset((nodes.DDBTypedValue, nodes.NoneExistingPath))
    passes: Any = validators
    known: dict[type, tuple[type, ...]] = {
        kind: ()
        for kind in (
            passes.ActionCountValidator,
            passes.OverlappingPathsValidator,
            passes.UpdateHashRangeKeyValidator,
            passes.ExpressionAttributeValueProcessor,
            passes.UpdateExpressionFunctionEvaluator,
            passes.NoneExistingPathChecker,
            passes.ExecuteOperations,
            passes.TypeMismatchValidator,
            passes.EmptyStringKeyValueValidator,
        )
        if kind.pre_processing_of_child is DepthFirstTraverser.pre_processing_of_child
    }
    known[passes.ExpressionAttributeResolvingProcessor] = actions
    acted_on_by = _ActedOn(known)
    cls: Any = validators.UpdateExpressionValidator
    original_init = cls.__init__

    def init(self: Any, expression: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, expression, *args, **kwargs)
        for processor in self.processors:
            acted_on = acted_on_by(processor)
            skipped = (
                None
                if acted_on is None
                else KEPT_PARSES.skipped_kinds(expression, Node, acted_on, outputs)
            )
            if skipped:
                processor.__dict__[SKIPPED_KINDS] = skipped

    with patched(cls, "__init__", init):
        yield
