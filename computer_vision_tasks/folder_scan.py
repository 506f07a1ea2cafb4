"""The images of one split of an image folder (``DIR/<split>/<class>/...``).

The order is torchvision's ``make_dataset`` (classes, folders and file names sorted), except that
symlinks are followed only inside the dataset folder (links out of it are left out with a
warning), a symlink loop is refused, and files under two classes (one file reached twice or, when
the split is small enough to read, identical copies) get a warning line.
"""

from __future__ import annotations

import os
import sys
from collections import defaultdict
from pathlib import Path

from ..common.errors import UsageError
from ..common.run_folder import CHEAP_BYTES, file_sha256

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class _Walk:
    """Walks class folders below ``root`` (resolved), following links only inside it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.outside: list[Path] = []  # links out of the dataset folder (left out)

    def target(self, link: Path) -> Path | None:
        """Where ``link`` leads, or None (recorded) when out of the dataset folder."""
        real = link.resolve()
        if not real.is_relative_to(self.root):
            self.outside.append(link)
            return None
        return real

    def folders(self, top: Path, chain: tuple[Path, ...]) -> list[tuple[str, list[str]]]:
        """(folder, file names) of ``top`` and every folder below; ``chain``: the real paths of
        the folders above (a link back to one of them is a loop)."""
        found: list[tuple[str, list[str]]] = []
        files: list[str] = []
        for entry in sorted(os.scandir(top), key=lambda e: e.name):
            path = Path(entry.path)
            if entry.is_symlink():
                real = self.target(path)
                if real is None:
                    continue
                if real.is_dir():
                    if real in chain:
                        raise UsageError(f"symlink loop in the dataset: {path} points to {real}, "
                                         "which contains it; remove the link")
                    found += self.folders(path, (*chain, real))
                else:
                    files.append(entry.name)
            elif entry.is_dir():
                found += self.folders(path, (*chain, path.resolve()))
            else:
                files.append(entry.name)
        return [(str(top), files), *found]


def scan(root: str | os.PathLike, split: str,
         classes: list[str] | None) -> tuple[list[str], list[int], list[str]]:
    """Image paths, labels and classes of ``root/split`` (``classes``: train's, for val/test)."""
    root = Path(root)
    walk = _Walk(root.resolve())
    folder = root / split
    found = [e.name for e in sorted(os.scandir(folder), key=lambda e: e.name)
             if not (e.is_symlink() and walk.target(Path(e.path)) is None) and e.is_dir()]
    if not found:
        raise UsageError(f"{folder} has no class folders; put the images in {folder}/<class>/")
    if classes is None:
        classes = found
        if len(classes) < 2:
            raise UsageError(f"{folder} has one class folder ({classes[0]!r}); a classifier needs "
                             "at least two classes: add a folder of images per class")
    extra = [c for c in found if c not in classes]
    if extra:
        raise UsageError(f"class {extra[0]!r} of {folder} is not a class of {root / 'train'}; "
                         "every val/test class needs training images")
    paths, labels = [], []
    for name in found:
        top = folder / name
        chain = (walk.root, folder.resolve(), top.resolve())  # a link back to any is a loop
        images = [os.path.join(d, f) for d, names in sorted(walk.folders(top, chain))
                  for f in sorted(names) if f.lower().endswith(IMG_EXTENSIONS)]
        if not images:
            raise UsageError(f"class folder {top} holds no images ({', '.join(IMG_EXTENSIONS)}); "
                             "add images or remove it")
        paths += images
        labels += [classes.index(name)] * len(images)
    if walk.outside:
        print(f"warning: {len(walk.outside)} links in {folder} lead out of the dataset folder and "
              f"were left out (e.g. {walk.outside[0]}); copy those images in instead",
              file=sys.stderr)
    _warn_repeats(folder, paths, labels, classes)
    return paths, labels, classes


def _warn_repeats(folder: Path, paths: list[str], labels: list[int], classes: list[str]) -> None:
    """One warning line when a file appears under two classes (same file, or same content)."""
    by_file: dict[tuple[int, int], list[int]] = defaultdict(list)
    sizes: dict[int, list[int]] = defaultdict(list)
    total = 0
    for i, p in enumerate(paths):
        try:
            st = os.stat(p)
        except OSError:
            continue  # a broken link: named when it is decoded
        by_file[(st.st_dev, st.st_ino)].append(i)
        sizes[st.st_size].append(i)
        total += st.st_size
    groups = list(by_file.values())
    if total <= CHEAP_BYTES:
        for same_size in sizes.values():
            if len({labels[i] for i in same_size}) > 1:
                by_hash: dict[str, list[int]] = defaultdict(list)
                for i in same_size:
                    by_hash[file_sha256(paths[i])].append(i)
                groups += by_hash.values()
    repeats = [g for g in groups if len({labels[i] for i in g}) > 1]
    if repeats:
        a, b = next((x, y) for x in repeats[0] for y in repeats[0] if labels[x] != labels[y])
        print(f"warning: {len({paths[i] for g in repeats for i in g})} images of {folder} appear "
              f"under two classes (e.g. {paths[a]} in {classes[labels[a]]!r} and {paths[b]} in "
              f"{classes[labels[b]]!r}); each copy trains with its folder's label: remove the "
              "wrong ones", file=sys.stderr)
