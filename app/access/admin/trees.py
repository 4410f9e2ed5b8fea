"""Groups and org units are trees: a node's path from the root, its children, and a refused loop."""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID

import asyncpg

from app.access.admin import Refused


@dataclass
class Node:
    id: UUID
    name: str
    parent_id: UUID | None
    label: str                      # the path from the root, "City / School A"
    path: tuple[UUID, ...]          # ids from the root to this node
    description: str = ""
    children: list["Node"] = field(default_factory=list)


@dataclass
class Tree:
    roots: list[Node]
    nodes: list[Node]               # depth first, siblings by name

    def get(self, node_id: UUID | None) -> Node | None:
        return next((n for n in self.nodes if n.id == node_id), None)

    def parent(self, parent_id: UUID | None, what: str) -> Node | None:
        """The chosen parent (None for the top); Refused when there is no such node."""
        parent = self.get(parent_id)
        if parent_id is not None and parent is None:
            raise Refused(f"There is no such parent {what}.", 404)
        return parent


def build(rows) -> Tree:
    """A tree from rows of (id, name, parent_id[, description]); no recursion, however deep."""
    by_parent: dict[UUID | None, list] = {}
    for row in rows:
        by_parent.setdefault(row["parent_id"], []).append(row)

    def children(parent_id):
        return sorted(by_parent.get(parent_id, []), key=lambda r: r["name"].lower(), reverse=True)

    roots, nodes = [], []
    stack = [(row, None) for row in children(None)]
    while stack:
        row, parent = stack.pop()
        node = Node(row["id"], row["name"], row["parent_id"],
                    f"{parent.label} / {row['name']}" if parent else row["name"],
                    (parent.path if parent else ()) + (row["id"],), row.get("description", ""))
        (parent.children if parent else roots).append(node)
        nodes.append(node)
        stack.extend((kid, node) for kid in children(row["id"]))
    return Tree(roots, nodes)


def loop_refused(error: asyncpg.CheckViolationError, what: str, name: str, parent: Node | None) -> Refused:
    """The refusal for the database's hierarchy_cycle check; any other check violation is raised again."""
    if error.constraint_name != "hierarchy_cycle" or parent is None:
        raise error
    return Refused(f"{what} “{name}” cannot go under “{parent.label}”: that {what.lower()} is inside it "
                   f"already, so it would contain itself. Choose another parent.")
