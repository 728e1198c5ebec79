import pytest

from pipelines.files import temporary, write_atomic, write_text_atomic


class Killed(Exception):
    """Stands for a kill in the middle of writing."""


def killed_after(text: str):
    def write(staged):
        staged.write_text(text)  # part of the file is written...
        raise Killed  # ...and then the program dies
    return write


def test_a_writer_killed_midway_leaves_the_previous_file_whole(tmp_path):
    path = write_text_atomic(tmp_path / "metrics" / "pytorch.json", '{"segm_map": 41.5}')
    with pytest.raises(Killed):
        write_atomic(path, killed_after('{"segm_'))
    assert path.read_text() == '{"segm_map": 41.5}'
    assert [p.name for p in path.parent.iterdir()] == ["pytorch.json"]


def test_a_writer_killed_midway_leaves_no_file_under_the_final_name(tmp_path):
    with pytest.raises(Killed):
        write_atomic(tmp_path / "model.pt", killed_after("half a checkpoint"))
    assert list(tmp_path.iterdir()) == []


def test_a_folder_is_replaced_whole_or_not_at_all(tmp_path):
    """An IR is a folder of two files a reader opens one after the other: never one from each export."""
    def ir(xml, weights, fail=False):
        def write(staged):
            staged.mkdir()
            (staged / "model.bin").write_text(weights)
            if fail:
                raise Killed
            (staged / "model.xml").write_text(xml)
        return write

    folder = tmp_path / "ir" / "fp32"
    write_atomic(folder, ir("<net 1/>", "weights 1"))
    (folder / "stale.txt").write_text("from an older export")
    with pytest.raises(Killed):
        write_atomic(folder, ir("<net 2/>", "weights 2", fail=True))
    assert {p.name: p.read_text() for p in folder.iterdir()} == {
        "model.xml": "<net 1/>", "model.bin": "weights 1", "stale.txt": "from an older export"}
    write_atomic(folder, ir("<net 2/>", "weights 2"))
    assert {p.name: p.read_text() for p in folder.iterdir()} == {"model.xml": "<net 2/>", "model.bin": "weights 2"}
    assert [p.name for p in folder.parent.iterdir()] == ["fp32"]


def test_what_a_killed_run_left_staged_does_not_stop_the_next_one(tmp_path):
    path = tmp_path / "predictions.jpg"
    temporary(path).write_text("left by a run killed for real")
    write_text_atomic(path, "whole")
    assert path.read_text() == "whole" and [p.name for p in tmp_path.iterdir()] == ["predictions.jpg"]
    assert temporary(path).suffix == ".jpg"  # writers that go by the suffix (PIL) write the staged file alike
