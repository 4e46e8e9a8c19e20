"""Outputs are never replaced silently, and a failed write leaves the old file whole."""

import pytest

from ferkit.errors import CheckpointError, DataError
from ferkit.outputs import refuse_existing, replaced_atomically


def test_refuse_existing_names_the_first_few_and_counts_the_rest(tmp_path):
    paths = [tmp_path / f"{i}.png" for i in range(5)]
    refuse_existing(paths)  # none exists yet
    for p in paths:
        p.touch()
    with pytest.raises(DataError) as exc:
        refuse_existing([tmp_path / "new.png", *paths, None])
    msg = str(exc.value)
    assert "0.png" in msg and "2.png" in msg and "3.png" not in msg
    assert "and 2 more already exist; pass --overwrite" in msg and "new.png" not in msg


def test_refuse_existing_raises_the_callers_error_with_its_hint(tmp_path):
    (tmp_path / "m.pt").touch()
    with pytest.raises(CheckpointError, match=r"m\.pt already exists; use overwrite=True$"):
        refuse_existing([tmp_path / "m.pt"], error=CheckpointError, hint="use overwrite=True")


def test_replaced_atomically_replaces_only_when_the_write_succeeds(tmp_path):
    out = tmp_path / "sub" / "results.csv"
    with replaced_atomically(out) as tmp:
        assert tmp.suffix == ".csv"  # writers that go by the suffix see the real one
        tmp.write_text("first")
        assert not out.exists()  # nothing visible until the block ends
    assert out.read_text() == "first"

    with pytest.raises(RuntimeError), replaced_atomically(out) as tmp:
        tmp.write_text("half of the seco")
        raise RuntimeError("crash mid-write")
    assert out.read_text() == "first" and sorted(p.name for p in out.parent.iterdir()) == [
        "results.csv"
    ]
