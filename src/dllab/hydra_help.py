"""``--help`` of dllab's Hydra commands: the config groups, listed in one pass, dllab's
internal groups left out.

Hydra 1.3 fills ``$APP_CONFIG_GROUPS`` and ``$HYDRA_CONFIG_GROUPS`` of a help template (both,
whichever the template uses) by asking its config loader about each group, twice over, and
every question deep-copies the whole config repository, Hydra's structured configs included:
about 130 copies for dllab's ``conf/``, most of a second. :func:`install` has Hydra's help
read the same groups from the repository itself (listing is read-only; Hydra's copy only
guards a search path that the listing never changes) and leave out groups whose name starts
with ``_`` (``conf/_base``: base configs used through defaults lists, never chosen on the
command line).

dllab-train and dllab-eval call :func:`install` before Hydra starts; nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_INSTALLED = "_dllab_help"


def is_internal(group: str) -> bool:
    """``_base``, ``_base/x``: a group (or a group inside one) whose name starts with ``_``."""
    return any(part.startswith("_") for part in group.split("/"))


def config_groups(repository: Any, parent: str = "") -> list[str]:
    """Every group under ``parent`` that holds configs, nested groups included (as Hydra's
    ``list_all_config_groups`` finds them), internal groups and what is inside them left out."""
    from hydra.core.object_type import ObjectType

    groups = []
    for name in repository.get_group_options(parent, ObjectType.GROUP):
        group = f"{parent}/{name}" if parent else name
        if is_internal(group):
            continue
        if repository.get_group_options(group, ObjectType.CONFIG):
            groups.append(group)
        groups.extend(config_groups(repository, group))
    return groups


def format_config_groups(repository: Any, predicate: Callable[[str], bool], compact: bool = True) -> str:
    """Hydra's listing of the groups ``predicate`` accepts: ``group: a, b, c`` per line (compact)
    or the group and one option per line."""
    from hydra.core.object_type import ObjectType

    text = ""
    for group in sorted(g for g in config_groups(repository) if predicate(g)):
        options = sorted(repository.get_group_options(group, ObjectType.CONFIG))
        text += f"{group}: {', '.join(options)}\n" if compact else f"{group}:\n" + "".join(f"  {o}\n" for o in options)
    return text


def install() -> None:
    """Make Hydra's ``--help`` and ``--hydra-help`` list config groups with
    :func:`format_config_groups` (in this process; calling it again does nothing)."""
    from dllab import compat

    hydra_format = compat.hydra_group_listing()
    if getattr(hydra_format, _INSTALLED, False):
        return

    def listing(self: Any, predicate: Callable[[str], bool], compact: bool = True) -> str:
        repository = getattr(self.config_loader, "repository", None)
        if repository is None:  # a config loader of another kind: Hydra's listing, filtered
            return hydra_format(self, lambda g: predicate(g) and not is_internal(g), compact)
        return format_config_groups(repository, predicate, compact)

    setattr(listing, _INSTALLED, True)
    compat.set_hydra_group_listing(listing)
