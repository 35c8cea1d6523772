"""Who may do what: one place, consulted by every operation of a catalog.

The default rules are OpenStack Glare's (``glare/common/policy.py``), action by action;
docs/concepts.md ("Permissions") has the table. An embedding application replaces any of
them by passing ``glarelite.open(..., policy=Policy({"delete": my_rule}))`` (or a plain
mapping of action to rule). A rule is a callable ``rule(scope, target) -> bool``:
``scope`` is who asks (:class:`glarelite.Scope`), ``target`` the artifact as it stands
(:class:`Target`; for ``create`` the artifact about to be made; ``None`` for actions on
no artifact: ``define_type``, ``set_quota``, ``gc``).

How a denial is reported: a caller that may not *read* an artifact (``get``) gets
``NotFound`` for every operation on it, so its existence does not leak; one that may
read it but not do the action gets ``Forbidden``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ._values import check_owner
from .errors import Forbidden, InvalidInput, NotFound


@dataclass(frozen=True)
class Scope:
    """Who is asking. An owner sees its own artifacts plus public ones; admin sees all.
    ``owner`` is also who new artifacts belong to."""

    owner: str = "admin"
    admin: bool = True

    @classmethod
    def of(cls, owner: str) -> Scope:
        return cls(owner=check_owner(owner), admin=False)


@dataclass(frozen=True)
class Target:
    """What a rule may look at: the artifact's owner, visibility and status."""

    id: str | None
    type_name: str
    owner: str
    visibility: str
    status: str


Rule = Callable[["Scope", "Target | None"], bool]


# -- Glare's building blocks -----------------------------------------------------------
def is_admin(scope: Scope, target: Target | None = None) -> bool:
    """Glare's ``context_is_admin``."""
    return scope.admin


def admin_or_owner(scope: Scope, target: Target | None) -> bool:
    """Glare's ``admin_or_owner``: ``is_admin:True or project_id:%(owner)s``."""
    return scope.admin or (target is not None and target.owner == scope.owner)


def anyone(scope: Scope, target: Target | None = None) -> bool:
    return True


def can_read(scope: Scope, target: Target | None) -> bool:
    """An artifact is readable by its owner and, once public, by everyone; a deactivated
    one by an admin only (Glare's ``download_deactivated``, applied to every read)."""
    if scope.admin:
        return True
    if target is None:
        return True
    if target.status == "deactivated":
        return False
    return target.owner == scope.owner or target.visibility == "public"


def _not_public_or_admin(scope: Scope, target: Target | None) -> bool:
    # Glare's update_public / delete_public: "'public':%(visibility)s and
    # rule:context_is_admin or not 'public':%(visibility)s"
    return scope.admin or target is None or target.visibility != "public"


def _not_deactivated_or_admin(scope: Scope, target: Target | None) -> bool:
    # Glare's delete_deactivated / download_deactivated
    return scope.admin or target is None or target.status != "deactivated"


def _update(scope: Scope, target: Target | None) -> bool:
    # artifact:update = admin_or_owner and artifact:update_public
    return admin_or_owner(scope, target) and _not_public_or_admin(scope, target)


def _delete(scope: Scope, target: Target | None) -> bool:
    # artifact:delete = admin_or_owner and delete_public and delete_deactivated
    return (
        admin_or_owner(scope, target)
        and _not_public_or_admin(scope, target)
        and _not_deactivated_or_admin(scope, target)
    )


def _download(scope: Scope, target: Target | None) -> bool:
    # artifact:download = download_deactivated, on what the scope may see (glarelite:
    # a public artifact's blobs are readable by everyone who sees it)
    return can_read(scope, target) and _not_deactivated_or_admin(scope, target)


#: Glare's defaults, action by action (``artifact:<action>`` in glare/common/policy.py).
DEFAULT_RULES: Mapping[str, Rule] = {
    "get": can_read,  # artifact:get "" + the visibility scope + download_deactivated
    "list": anyone,  # artifact:list "" (what is listed is what ``get`` allows)
    "create": admin_or_owner,  # artifact:create ""; only an admin creates for another owner
    "update": _update,  # artifact:update
    "activate": admin_or_owner,  # artifact:activate
    "deactivate": is_admin,  # artifact:deactivate
    "reactivate": is_admin,  # artifact:reactivate
    "publish": is_admin,  # artifact:publish
    "delete": _delete,  # artifact:delete
    "upload": admin_or_owner,  # artifact:upload
    "add_location": admin_or_owner,  # artifact:set_location
    "remove_blob": admin_or_owner,  # artifact:delete_blob
    "download": _download,  # artifact:download + artifact:download_deactivated
    "define_type": is_admin,  # glarelite: types are code in Glare, data here
    "set_quota": is_admin,  # artifact:set_quotas
    "gc": is_admin,  # glarelite: maintenance
    "journal": is_admin,  # glarelite: the change journal names every owner's artifacts
}
ACTIONS = tuple(DEFAULT_RULES)


class Policy:
    """Rules per action: Glare's defaults, with any given ``rules`` in their place.

    ``Policy({"publish": admin_or_owner})`` lets owners publish; a rule may be any
    callable ``(scope, target) -> bool``. Unknown action names are refused, so a typo
    cannot leave a default in force silently."""

    def __init__(self, rules: Mapping[str, Rule] | None = None) -> None:
        given = dict(rules or {})
        unknown = sorted(set(given) - set(ACTIONS))
        if unknown:
            raise InvalidInput(
                f"no policy action {', '.join(map(repr, unknown))}; one of {', '.join(ACTIONS)}"
            )
        for action, rule in given.items():
            if not callable(rule):
                raise InvalidInput(f"the rule for {action!r} must be callable, not {rule!r}")
        self.rules: dict[str, Rule] = {**DEFAULT_RULES, **given}

    @classmethod
    def of(cls, policy: Policy | Mapping[str, Rule] | None) -> Policy:
        if policy is None:
            return cls()
        if isinstance(policy, Policy):
            return policy
        if isinstance(policy, Mapping):
            return cls(policy)
        raise InvalidInput(f"policy must be a Policy or a mapping of rules, not {policy!r}")

    def allows(self, action: str, scope: Scope, target: Target | None) -> bool:
        return bool(self.rules[action](scope, target))

    def can_read(self, scope: Scope, target: Target) -> bool:
        return self.allows("get", scope, target)

    def authorize(self, action: str, scope: Scope, target: Target | None) -> None:
        """Raise unless ``scope`` may do ``action`` on ``target``: NotFound when it may
        not even read the artifact (its existence must not leak), else Forbidden."""
        if target is not None and target.id is not None and not self.can_read(scope, target):
            raise NotFound(f"no artifact {target.id}")
        if not self.allows(action, scope, target):
            what = action.replace("_", " ")
            on = f" artifact {target.id}" if target is not None and target.id else ""
            raise Forbidden(f"the policy does not let {_who(scope)} {what}{on}")


def _who(scope: Scope) -> str:
    return "an admin" if scope.admin else f"owner {scope.owner!r}"
