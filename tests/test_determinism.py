"""The output is a function of the input bytes and upload times alone (DESIGN.md §3).

One corpus, prepared once the plain way; then again with the input files named
in other orders, with other read-range sizes, and with two worker processes:
every data file must be the same, byte for byte, and so must the summary's
figures. (test_multiprocessing.py compares worker processes with one process
on the same command line; here they also get the files in another order and
other ranges.)
"""

import hashlib
import random
import shutil
import sys
from pathlib import Path

import orjson
import pytest

from e2e import SAMPLE, run_cli, run_cli_process, summary, write_input

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # benchmarks/ is a folder of the repo, not an installed package

from benchmarks import corpus  # noqa: E402

REF = "2024-02-01T00:00:00Z"
T0 = 1_704_067_200  # 2024-01-01T00:00:00Z
# Over 1 MiB of events, so that with --max-file-mb 1 the days are written in several shards.
FLAGS = ("--reference-time", REF, "--max-file-mb", "1", "--keep-superseded")
# Options that differ between the runs by design, and the run's own id.
VARYING = ("input", "output", "range_bytes", "run_date")


def _corpus(root: Path) -> list[Path]:
    """Seven files: plain, gzip, CRLF, a BOM, no final newline, multi-byte text, equal
    upload times; events re-sent across files, profile and group updates, rejects, blanks."""
    rng = random.Random(7)
    pad = "é€𝄞" * 60  # multi-byte characters, so that ranges start inside characters
    pool = [(rng.choice(["Signup", "Login", "Buy"]), f"u{rng.randrange(200)}", T0 + rng.randrange(2 * 86400),
             f"id-{i}") for i in range(2500)]
    paths = []
    for f in range(7):
        lines = []
        for n in range(600):
            kind = rng.random()
            if kind < 0.8:
                name, user, time, insert_id = rng.choice(pool)
                props = {"distinct_id": user, "time": time, "$insert_id": insert_id, "upload": f, "pad": pad,
                         "v": rng.choice([1, "1", 1.5, None])}  # a type conflict, for _SCHEMA.json
                if rng.random() < 0.3:
                    del props["$insert_id"]
                    props["time"] = time + 0.5
                lines.append(orjson.dumps({"event": name, "properties": props}))
            elif kind < 0.88:
                lines.append(orjson.dumps({"$distinct_id": f"u{rng.randrange(200)}", "$set": {"n": n, "f": f}}))
            elif kind < 0.91:
                lines.append(orjson.dumps({"$group_key": "company", "$group_id": rng.randrange(30), "$set": {"n": n}}))
            elif kind < 0.97:
                lines.append(rng.choice([b"{broken", b'{"event": "E", "properties": {}}', b"\xff\xfe", b"[]"]))
            else:
                lines.append(rng.choice([b"", b"  ", b"\t"]))
        name = ["a.ndjson", "b.ndjson.gz", "c-crlf.ndjson", "d-bom.ndjson", "e.ndjson", "f.ndjson.gz", "g.ndjson"][f]
        if "bom" in name:
            lines[0] = b"\xef\xbb\xbf" + lines[0]
        path = write_input(root / name, lines, ending=b"\r\n" if "crlf" in name else b"\n",
                           final_newline=f != 4, mtime=1_700_000_000 + 60 * (f // 2))  # pairs share a time
        paths.append(path)
    return paths


def _result(out: Path) -> tuple[dict[str, bytes], dict]:
    """The data files' and _SCHEMA.json's bytes, and the summary without what differs by design."""
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()
             and (not p.name.startswith("_") or p.name == "_SCHEMA.json")}
    s = summary(out)
    s.pop("run_id")
    for name in VARYING:
        s["options"].pop(name)
    return files, s


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The corpus, and its output prepared with the files named in upload order."""
    root = tmp_path_factory.mktemp("determinism")
    paths = _corpus(root / "raw")
    out = root / "reference"
    args = [a for p in paths for a in ("--input", str(p))]
    assert run_cli(*args, "--output", str(out), *FLAGS) == 0
    files, s = _result(out)
    # The corpus exercises what could differ: several shards of a day, every category.
    assert any("-of-00001." not in name for name in files if name.startswith("events/"))
    o = s["output"]
    assert all(o[k] > 0 for k in ("events", "superseded", "profiles", "groups", "rejected"))
    assert s["input"]["blank_lines"] > 0 and s["normalised"]["insert_id_generated"] > 0
    schema = orjson.loads(files["_SCHEMA.json"])
    assert {name: keys for name, keys in schema["conflicts"].items()} == {n: ["v"] for n in ("Buy", "Login", "Signup")}
    return root, paths, (files, s)


def test_the_order_in_which_input_files_are_named_does_not_change_the_output(prepared):
    root, paths, expected = prepared
    shuffled = paths[:]
    random.Random(1).shuffle(shuffled)
    orders = {
        "reversed": [a for p in reversed(paths) for a in ("--input", str(p))],
        # The same files named twice (a glob and each path): still read once each.
        "shuffled_and_globbed": ["--input", str(root / "raw" / "*")] + [a for p in shuffled for a in ("--input", str(p))],
    }
    for label, args in orders.items():
        out = root / label
        assert run_cli(*args, "--output", str(out), *FLAGS) == 0
        files, s = _result(out)
        assert sorted(files) == sorted(expected[0]), label
        assert files == expected[0], label
        assert s == expected[1], label


@pytest.mark.parametrize("range_bytes", [4093, 131_071])
def test_the_read_range_size_does_not_change_the_output(prepared, range_bytes, small_read_ranges):
    root, paths, expected = prepared
    out = root / f"ranges-{range_bytes}"
    args = [a for p in paths for a in ("--input", str(p))]
    assert run_cli(*args, "--output", str(out), "--range-bytes", str(range_bytes), *FLAGS) == 0
    files, s = _result(out)
    assert files == expected[0]
    assert s == expected[1]


def test_two_worker_processes_given_the_files_in_another_order_and_other_ranges(prepared):
    root, paths, expected = prepared
    out = root / "workers"
    args = [a for p in reversed(paths) for a in ("--input", str(p))]
    child = run_cli_process(
        *args, "--output", str(out), "--range-bytes", "65521", *FLAGS,
        "--direct_running_mode=multi_processing", "--direct_num_workers=2", small_read_ranges=True,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    files, s = _result(out)
    assert files == expected[0]
    assert s == expected[1]


# --- Pinned output: the exact bytes of every data file -------------------------------------
# Computed on main before issue 14's optimisation round (commit 32edbd9), so that no
# speed-up can change a byte unnoticed: the codec across the shuffle, the number of
# worker processes, the encoding of offsets are the pipeline's business, the output
# is not. Inputs are named relative to the working folder, as reject lines name them.

SAMPLE_DIGESTS = {
    "events/day=2020-09-28/part-00000-of-00001.ndjson.gz": "5cf2f89206ed9301f9cc429f10a6ee7bbc79831485d647cea58a2a22dcdd9f3e",
    "events/day=2020-09-29/part-00000-of-00001.ndjson.gz": "f18a502a3c02a1d72228cfb6b6467eac86b5b6fbbba2a8a3c830ea2853eda777",
    "events/day=2020-09-30/part-00000-of-00001.ndjson.gz": "dbc0c969b24ab8d5a55ab1710005f010e3784bd751a7ff3b16702e76266b9b88",
    "events/day=2020-10-01/part-00000-of-00001.ndjson.gz": "d433cc8fd4c3ff4be1053bc2b6495f2c9fa21487ae8f608e5955d61bc658a422",
    "events/day=2020-10-02/part-00000-of-00001.ndjson.gz": "ea3b2212c4e66dc42ee0848097d37a3a7d50d6f463e0439e40790777c5f33e85",
    "events/day=2020-10-03/part-00000-of-00001.ndjson.gz": "3fb9807f434ac58fa0e02d6b730470a18f2cdcc80be38245588c79fb42b75fbd",
    "events/day=2020-10-04/part-00000-of-00001.ndjson.gz": "26e0da9ce34a1aff064dd45c4ca7e936d9a5c70763b4d3634cc60e394993b45c",
    "events/day=2020-10-25/part-00000-of-00001.ndjson.gz": "551336b11cc5a57abba4748df28a8ace80fb079ad8940389376bcc93aafa2fa1",
    "groups/part-00000-of-00001.ndjson.gz": "5f436e7e5fcb03f9c1bf391c4c644116541532c49c7fa7929bb31d55d7a6950e",
    "profiles/part-00000-of-00001.ndjson.gz": "9552a129766322b8e3ce116e9bc0cff50b79008d902ba441490df5df4682d093",
    "rejects/part-00000-of-00001.ndjson.gz": "09585cfb1ae26fbb526805a04ec20410933d2a81fc0701d67b14243307eb180f",
    "superseded/day=2020-10-03/part-00000-of-00001.ndjson.gz": "7f3be92e4cbee4e4a3a8170963765794d2817c7f717842b5ce8958348d49647b",
}
CORPUS_DIGESTS = {
    "events/day=2024-05-02/part-00000-of-00001.ndjson.gz": "82ca2cd932d643c8441dafa9feea249172d57630a0f2acf750950f398b009084",
    "events/day=2024-05-03/part-00000-of-00001.ndjson.gz": "3970c427d01213c81ee3e52c4a2b8c5dfa2f306c292dc04300857a8b8684783b",
    "events/day=2024-05-04/part-00000-of-00001.ndjson.gz": "1778857fa96ddaf1d2f42ca6a3b6418dbad6efe06d269d8a0cb72e003c7e13e8",
    "events/day=2024-05-05/part-00000-of-00001.ndjson.gz": "0e47be46341bb65f15fdd5f1962c35ef24dca5080e8638edcd8316c6b7aa034e",
    "events/day=2024-05-06/part-00000-of-00001.ndjson.gz": "2fc040e4da373588e6ce3b7ff4d12c71754a7bf91d1eb7424697454bfe88a574",
    "events/day=2024-05-07/part-00000-of-00001.ndjson.gz": "616c11be547192c0959e6e4da32aa190f213afb9528ca6fa4c7338ffb8ceab7f",
    "events/day=2024-05-08/part-00000-of-00001.ndjson.gz": "4d59de61f786d055b6962821b89dc8f5a27a88aebb1c2b2b7dcdfdb251a43625",
    "events/day=2024-05-09/part-00000-of-00001.ndjson.gz": "b2f08ec3117d4edb415f5bf28e53f8cb32d2bb185641652b99b771e016ea165e",
    "events/day=2024-05-10/part-00000-of-00001.ndjson.gz": "e6fa0c93f487fa38672dfe3ebc8dd1cff9eb1641779d2a9030bc4a0dacf72588",
    "events/day=2024-05-11/part-00000-of-00001.ndjson.gz": "2513913c8691c61d38babe0f446c053a528a41b9c42792862ae802adb4ed5bd2",
    "events/day=2024-05-12/part-00000-of-00001.ndjson.gz": "ce47dc1f5fbe9893485b28780ecb3942fc254e685f753e5e9d81800e05341838",
    "events/day=2024-05-13/part-00000-of-00001.ndjson.gz": "345bae22703bcc8e000dc099a356a887ee89676c568649c1e39a96cf25751d06",
    "events/day=2024-05-14/part-00000-of-00001.ndjson.gz": "fabd3930fdf5056e8d2163729fd2de967e30fdf25a8a4a8e2c49225629165d7d",
    "events/day=2024-05-15/part-00000-of-00001.ndjson.gz": "ad1c4a48a4b8b2537334122a85737e3b3090f2bbb754c80438c3c24a3f9586ed",
    "events/day=2024-05-16/part-00000-of-00001.ndjson.gz": "b33d4592398b6cc9a362030b9985e58e23f206d49642bdc67fb26dfb3da9234c",
    "events/day=2024-05-17/part-00000-of-00001.ndjson.gz": "7ab2d4c6fbf7a3794c651886d08442acae858ee40f54eec06b0493a40f9e73be",
    "events/day=2024-05-18/part-00000-of-00001.ndjson.gz": "9ca495992ce13e2ade50ce2d98e187267370a9f0f3d4cb4237a03e47df6909a4",
    "events/day=2024-05-19/part-00000-of-00001.ndjson.gz": "0bcc843429167a9b6c2dd2ffe68332e0561f848a961654a774c5fb43387a705f",
    "events/day=2024-05-20/part-00000-of-00001.ndjson.gz": "1fe2f8375d481db2420c25c23af4859ff0b039af097f24d9eb810192d1157b93",
    "events/day=2024-05-21/part-00000-of-00001.ndjson.gz": "d2e89922f969bfd8915d4d98a7a34a012a9500576e944f8c26aa3bdda42e0031",
    "events/day=2024-05-22/part-00000-of-00001.ndjson.gz": "c02bcca1e6f572e51721b96b2db56e7a0ea1a65c3e08a86a295fbcc9156204f0",
    "events/day=2024-05-23/part-00000-of-00001.ndjson.gz": "f2f1450a426183be99a5938677cb3a70e2b8c2a466421de11a1cde3eaa20dd10",
    "events/day=2024-05-24/part-00000-of-00001.ndjson.gz": "9e4aa0110b5856a4031492a15c25c6d8114a11b706ee43926b5b9f4885d0081a",
    "events/day=2024-05-25/part-00000-of-00001.ndjson.gz": "79b8eab723ebce1640883662f8cb657dd57d4eff29acd03e34835a9ad24b6998",
    "events/day=2024-05-26/part-00000-of-00001.ndjson.gz": "e53ba0a3ebf83a4648bc34236c3d476c2c7b0e05e43aebe035b1911674e89c80",
    "events/day=2024-05-27/part-00000-of-00001.ndjson.gz": "a80f5a1850d1eac7a1722b824443bdd611a9ba9ff303860a572e8443628e870c",
    "events/day=2024-05-28/part-00000-of-00001.ndjson.gz": "e8441467b18836d7e6092bf56aaa894e258f8b9aeffd6a712fdfcdac7d908aa9",
    "events/day=2024-05-29/part-00000-of-00001.ndjson.gz": "e16922b47fedb69ee056aa5bdc8828c0cad3c0f4267a78b6cd56e07769a57bde",
    "events/day=2024-05-30/part-00000-of-00001.ndjson.gz": "d6f5fb6a18d19cda03cd52f7ed33a681348f125509d6ffe2e4d6486a8543db92",
    "events/day=2024-05-31/part-00000-of-00001.ndjson.gz": "ff3ae52d4eafc23bfaf54493073ad150ac30f97bae7157c8a5fc8f0024d594a1",
    "groups/part-00000-of-00001.ndjson.gz": "d683f36d9520c366b671de6b7e81ba853147a343e50688ec9f6b21ecb3f536b4",
    "profiles/part-00000-of-00001.ndjson.gz": "59df54c80af53b5653145cfff284b3b471ea7e6a514a1411212fadfaff7111db",
    "rejects/part-00000-of-00001.ndjson.gz": "3bef3210aecac42b2534846c0ce69ddd9ec5f6b557baadabd701b5199552028e",
    "superseded/day=2024-05-02/part-00000-of-00001.ndjson.gz": "b6c91bf2cc777fb1f9eb5ba5607d3ef3bffe074eb00dc34029d2c807e2700ed3",
    "superseded/day=2024-05-03/part-00000-of-00001.ndjson.gz": "013abd897e09c8f78ffbe1245b618ae840311fe6236f285cd56c57165933bcc9",
    "superseded/day=2024-05-04/part-00000-of-00001.ndjson.gz": "daace5fd24376d2b7a12ddefec2dded4c77146e29ea0691858befad4b070a351",
    "superseded/day=2024-05-05/part-00000-of-00001.ndjson.gz": "0867332b1b460ce3c9ad9f7cc414756872d994b30f7743e3cdb8f1c8823b265b",
    "superseded/day=2024-05-06/part-00000-of-00001.ndjson.gz": "b0cbcf579d54ed8c07af8226f7af06394c58ea255db69bb31407344189aa174a",
    "superseded/day=2024-05-07/part-00000-of-00001.ndjson.gz": "8d18bf87934c1e80d0e8b38b7ff7a8bcfb6341d2bf8bff12f30b754e2a24cc55",
    "superseded/day=2024-05-08/part-00000-of-00001.ndjson.gz": "ddce398628587e699528844fdfa01aadd3e22da41ee7547d85889fc4f081a4ed",
    "superseded/day=2024-05-09/part-00000-of-00001.ndjson.gz": "ba197bba2a2ff484502669a4b89ffc6b65c17a3a1b4adff98356e48e294185d5",
    "superseded/day=2024-05-10/part-00000-of-00001.ndjson.gz": "da2cc65d2cc302bd104d6483d2fce6b833008760e5eecae232f906b9cb490d24",
    "superseded/day=2024-05-11/part-00000-of-00001.ndjson.gz": "b518d7e62df5ffd3c6f8f1b06381ff9836d158a47aca4cb56603298b9b6b28a4",
    "superseded/day=2024-05-12/part-00000-of-00001.ndjson.gz": "6d245b1be0c7568b61f09120afd1f4c51f513460fc9ebaa724dc4692de94e527",
    "superseded/day=2024-05-13/part-00000-of-00001.ndjson.gz": "cff440f9209362847af8613728ff20862d005227f741064e67fbfd810e26e656",
    "superseded/day=2024-05-14/part-00000-of-00001.ndjson.gz": "1255e542f2fb93cbca78b9474002bb30ce44fbcf4277aad74860ee9cca6ad50c",
    "superseded/day=2024-05-15/part-00000-of-00001.ndjson.gz": "1f6bb216fbed1e2306e61d13abd12fdc46d209da0fa12609236d13935a148a50",
    "superseded/day=2024-05-16/part-00000-of-00001.ndjson.gz": "c81f8349005a26a9d4543a90d0829b64359d04050d7dd6a390b80cf3d42edc56",
    "superseded/day=2024-05-17/part-00000-of-00001.ndjson.gz": "9a78705d6072ad51dc29a0590e795ef49037a12e2193b34c2094bd88bb5bc4f0",
    "superseded/day=2024-05-18/part-00000-of-00001.ndjson.gz": "14e065756e9597646c09f7d0cdae0598aab83f89a2c4b35dfeaf29a92fe53694",
    "superseded/day=2024-05-19/part-00000-of-00001.ndjson.gz": "35f234683c93fbcda69d89b7fbf478ce6fb0fdedf5ce1ebd2bc73ed1ef01962a",
    "superseded/day=2024-05-20/part-00000-of-00001.ndjson.gz": "784e1fc24a755b4094d9802ddcd22be030498eccb921454ce0d0bb59990b6388",
    "superseded/day=2024-05-21/part-00000-of-00001.ndjson.gz": "337267fdb59d5e7ebdfb5d520896e4328a8a2fed5eebebca18c65bde550e849c",
    "superseded/day=2024-05-22/part-00000-of-00001.ndjson.gz": "b6f54bc2e6394c3df16f91732564ef9a1181a8d04ab959dd075087ca03636e73",
    "superseded/day=2024-05-23/part-00000-of-00001.ndjson.gz": "23a4a129bb27120064ef712f206a3cc25bb6283cd96744f55e013d8f09d64b66",
    "superseded/day=2024-05-24/part-00000-of-00001.ndjson.gz": "087562cb84689a38a6c3edcfb6822836c1e790dc6285d82d9d1bdaf8374a9ec3",
    "superseded/day=2024-05-25/part-00000-of-00001.ndjson.gz": "f897a30c3c1f528e3afc5b273c5b5ca2793f469eace17c9f8584410852cc077d",
    "superseded/day=2024-05-26/part-00000-of-00001.ndjson.gz": "67dda034682161638ec193acbf7536321088093e864c700acb8a72eee8886f74",
    "superseded/day=2024-05-27/part-00000-of-00001.ndjson.gz": "b07fe1a17e4ca3cd35d5abdd639c46c99973e496373b0a92aff0c471174fdd8b",
    "superseded/day=2024-05-28/part-00000-of-00001.ndjson.gz": "9935a940f6877981d843dfd445f0cfa69c9c1559b7c638dd72679dcb7b2acf94",
    "superseded/day=2024-05-29/part-00000-of-00001.ndjson.gz": "248b4a2b18d719b44940867283b9b97f5ffdb1a0cd605a24dea740fe4400da37",
    "superseded/day=2024-05-30/part-00000-of-00001.ndjson.gz": "379d13d824e033e8e1c76f409e18abf6bce53a3b288f61170dcbcfe3a116edfd",
    "superseded/day=2024-05-31/part-00000-of-00001.ndjson.gz": "b812ed0498212ccb8c18239c21aff0f2632b03b594130e8c95276e5539fc663c",
}
CORPUS_LINES, CORPUS_FILES, CORPUS_SEED = 12_000, 6, 7


def _digests(out: Path) -> dict[str, str]:
    return {
        p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file() and not p.name.startswith("_")
    }


def test_the_sample_gives_the_pinned_bytes(tmp_path, monkeypatch):
    shutil.copytree(SAMPLE, tmp_path / "in")
    monkeypatch.chdir(tmp_path)
    status = run_cli("--input", "in/*", "--output", "out", "--reference-time", "2024-06-01T00:00:00Z",
                     "--upload-order", "name", "--keep-superseded")
    assert status == 0
    assert _digests(tmp_path / "out") == SAMPLE_DIGESTS


def test_a_generated_corpus_gives_the_pinned_bytes(tmp_path, monkeypatch):
    made = corpus.generate(tmp_path / "c", CORPUS_LINES, CORPUS_FILES, seed=CORPUS_SEED)
    monkeypatch.chdir(made.folder)
    # --max-file-mb 1: the input is larger than one file, so routes are measured and sharded.
    status = run_cli("--input", "data/*", "--output", "out", "--reference-time", made.reference_time,
                     "--max-file-mb", "1", "--keep-superseded")
    assert status == 0
    assert _digests(made.folder / "out") == CORPUS_DIGESTS
