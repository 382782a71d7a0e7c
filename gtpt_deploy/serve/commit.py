"""Putting a finished repository in place: a new folder at once, an earlier one entry by entry, nothing else touched.

``gtpt-deploy triton`` builds the repository in a temporary folder beside ``--repo``. When ``--repo`` does not exist
that folder is renamed onto it (one atomic step). When it exists, only what an earlier ``gtpt-deploy triton`` wrote
there is replaced - the manifest ``.gtpt-triton.json`` lists those entries (model folders, README.md), as
``run --force`` does with ``.gtpt-run.json`` - and everything else in the folder stays, so ``--force`` on a folder
that holds other work (or on the folder you stand in, ``--repo .``) can never delete it. The folder itself is never
renamed: no EBUSY on the working directory, no ``..old.*`` folder left beside it. No torch import.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import ArtifactExistsError, GtptError

MANIFEST = ".gtpt-triton.json"


def read_entries(repo: Path) -> list[str] | None:
    """The entries an earlier ``gtpt-deploy triton`` wrote into ``repo`` (None: no readable manifest).

    Names only, never paths: a manifest can at most point at entries directly inside its folder."""
    try:
        data = json.loads((repo / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    entries = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return None
    return [e for e in entries if isinstance(e, str) and e == Path(e).name and e not in ("", ".", "..", MANIFEST)]


def check_target(repo: Path, force: bool) -> list[str] | None:
    """Whether ``repo`` may be written -> the earlier entries to replace ([] for an empty folder, None when new).

    Raises (one line): a file in the way; an existing non-empty folder without ``force``; with ``force``, a folder
    that holds content no ``gtpt-deploy triton`` manifest lists."""
    if not repo.exists():
        return None
    if not repo.is_dir():
        raise GtptError(f"--repo {repo} is a file, expected a folder; choose another --repo")
    content = sorted(p.name for p in repo.iterdir())
    if not content:
        return []
    if not force:
        raise ArtifactExistsError(f"repository {repo} already exists; pass --force to replace it or choose another "
                                  f"--repo")
    entries = read_entries(repo)
    if entries is None:
        shown = ", ".join(content[:3]) + (", ..." if len(content) > 3 else "")
        raise GtptError(f"--repo {repo} holds {shown}, which 'gtpt-deploy triton' did not write (no {MANIFEST} "
                        f"manifest), and --force replaces only a repository it wrote; choose a new or empty --repo")
    return entries


def commit_repository(tmp: Path, repo: Path, previous: list[str] | None) -> None:
    """Move the finished ``tmp`` into ``repo``; ``previous`` from :func:`check_target`.

    New folder: one rename. Existing folder: the earlier entries are moved aside into a hidden folder inside
    ``repo``, the new ones moved in, the aside folder removed; on any failure the new entries are taken out again
    and the earlier ones put back. An entry of the new repository that exists in ``repo`` but is not in the
    manifest is refused before anything moves."""
    if previous is None:
        try:
            os.replace(tmp, repo)  # fails when another writer made a non-empty repo meanwhile: never onto it
        except OSError as e:
            if repo.exists():
                raise ArtifactExistsError(f"repository {repo} was created by someone else while this one was being "
                                          f"written ({e.strerror}); nothing was changed, run again") from None
            raise
        return
    new = sorted(p.name for p in tmp.iterdir())
    clash = [n for n in new if (repo / n).exists() and n not in previous and n != MANIFEST]
    if clash:
        raise GtptError(f"--repo {repo} already holds {', '.join(clash)}, which 'gtpt-deploy triton' did not "
                        f"write; move it away or choose another --repo")
    aside = Path(tempfile.mkdtemp(prefix=".gtpt-triton-old.", dir=repo))
    moved_aside: list[str] = []
    moved_in: list[str] = []
    try:
        for name in [*previous, MANIFEST]:
            if (repo / name).exists() or (repo / name).is_symlink():
                os.replace(repo / name, aside / name)
                moved_aside.append(name)
        for name in new:
            os.replace(tmp / name, repo / name)
            moved_in.append(name)
    except BaseException:
        for name in moved_in:  # undo: the new entries out, the earlier ones back
            target = repo / name
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)
        for name in moved_aside:
            os.replace(aside / name, repo / name)
        raise
    finally:
        shutil.rmtree(aside, ignore_errors=True)
