from pathlib import Path

from pipelines.datasets import demo
from pipelines.datasets.prepare import import_dataset


def test_demo_sets_are_deterministic(tmp_path):
    """Every file of every demo set (images, masks, lists, WGISD's npz and box files, COCO jsons) is the same
    byte for byte when written twice with the same seed, and different with another seed."""
    def write(root, seed):
        demo.make_cityscapes(root / "cs", 3, 2, seed=seed)
        demo.make_pets(root / "pets", 4, 2, seed=seed)
        demo.make_wgisd(root / "wg", 4, 4, seed=seed)
        demo.make_coco_json(root / "coco", 4, 2, seed=seed)
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    first, again, other = write(tmp_path / "a", 5), write(tmp_path / "b", 5), write(tmp_path / "c", 6)
    suffixes = {Path(name).suffix for name in first}
    assert {".png", ".jpg", ".npz", ".txt", ".json"} <= suffixes, suffixes
    assert list(first) == list(again)
    assert [name for name in first if first[name] != again[name]] == []
    assert [name for name in first if name in other and first[name] != other[name]]  # the seed matters


def test_demo_sets_import_through_the_real_importers(tmp_path):
    demo.make_cityscapes(tmp_path / "cs", 4, 2, seed=0)
    demo.make_pets(tmp_path / "pets", 8, 4, seed=0)
    demo.make_wgisd(tmp_path / "wg", 8, 4, seed=0)
    cityscapes = import_dataset("cityscapes_instances", tmp_path / "cs", {})
    pets = import_dataset("oxford_pets", tmp_path / "pets", {})
    wgisd = import_dataset("wgisd", tmp_path / "wg", {"by_variety": True})
    assert len(cityscapes) == 6 and len(pets) == 12
    # A quarter of the WGISD images carry no masks and are left out, as in the real set.
    assert len(wgisd) == 9
    assert all(item.annotations for item in pets)
