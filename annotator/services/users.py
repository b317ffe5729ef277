"""Who is acting and what their role lets them do (the roles themselves are checked by ``context.require``
at the top of every write function)."""

from __future__ import annotations

from ..users import ROLES, role_rank
from .context import AppContext


def whoami(ctx: AppContext, user: str | None = None) -> dict:
    """The acting user, their role (None for a name the app does not know), whether the app has login, and
    the roles theirs includes (a viewer: ["viewer"]; an admin: all three)."""
    role = ctx.role(user)
    return {"user": ctx.user(user), "role": role, "login": ctx.registry.login_required,
            "can": [r for r in ROLES if role_rank(role) >= role_rank(r)]}
