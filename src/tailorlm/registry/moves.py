"""Alias moves: the one way an alias is pointed at a target, and the history of its moves.

Every producer that moves an alias (prepare's `latest` and `golden`, a run's `latest`, the ladder's
`ladder.RUNG`, promote, rollback, the loop and its canary) moves it here; the store serialises the move
and keeps it in `alias_history` with its reason.

>>> move_alias(project, "model", "support", "production", "support:sft@v3", reason="gate passed").previous  # doctest: +SKIP
'support:sft@v2'
"""

from tailorlm.registry.artifacts import AliasMove


def move_alias(project, scope: str, name: str, alias: str, target: str, reason: str | None = None) -> AliasMove:
    """Point `scope` alias `name@alias` at `target`, recording the move; returns it, with the target it replaced."""
    previous = project.store.set_alias(scope, name, alias, target, reason=reason)
    return AliasMove(scope=scope, name=name, alias=alias, target=target, previous=previous, reason=reason)


def alias_history(project, scope: str, name: str, alias: str) -> list[AliasMove]:
    """Every move of one alias, oldest first."""
    rows = project.store.select("alias_history", order_by="at", scope=scope, name=name, alias=alias)
    return [AliasMove.model_validate(r) for r in rows]
