"""A deterministic deletion list for --exclude-users, sized at will, naming some users of a corpus.

`python benchmarks/deletion_list.py OUT IDS [SEED]` writes IDS lines: one user in twenty of
the benchmark corpus of that seed (benchmarks/corpus.py: 1,000 of its 20,000 string ids), 500
of its integer ids ("1" to "500"), and ids of the same shape that occur nowhere, shuffled.
What a run with it must exclude is what those ids have; the rest only makes the list big.
"""


import random
import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: make the package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.corpus import DEFAULT_SEED, line_maker

INTEGER_IDS = 500


def corpus_users(seed: int = DEFAULT_SEED) -> list[str]:
    """The string user ids the corpus of `seed` draws its events from."""
    return list(line_maker(seed).users)


def deletion_list(ids: int, seed: int = DEFAULT_SEED) -> list[str]:
    """`ids` ids, shuffled: some of the corpus's users, the rest unknown to it."""
    listed = corpus_users(seed)[::20] + [str(n) for n in range(1, INTEGER_IDS + 1)]
    if ids < len(listed):
        raise ValueError(f"ids must be at least {len(listed)}, got {ids}")
    rng = random.Random(seed + 3)
    listed += [f"u-{rng.getrandbits(48):012x}x" for _ in range(ids - len(listed))]  # "x": no corpus id
    rng.shuffle(listed)
    return listed


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__.splitlines()[0], file=sys.stderr)
        print("usage: deletion_list.py OUT IDS [SEED]", file=sys.stderr)
        return 2
    seed = int(argv[2]) if len(argv) == 3 else DEFAULT_SEED
    Path(argv[0]).write_text("".join(f"{i}\n" for i in deletion_list(int(argv[1]), seed)), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
