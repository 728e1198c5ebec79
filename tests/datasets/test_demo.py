from pipelines.datasets import demo
from pipelines.datasets.prepare import import_dataset


def test_demo_sets_are_deterministic(tmp_path):
    for run in ("a", "b"):
        demo.make_cityscapes(tmp_path / run / "cs", 3, 2, seed=5)
        demo.make_wgisd(tmp_path / run / "wg", 4, 4, seed=5)
    for path in (tmp_path / "a").rglob("*.png"):
        assert path.read_bytes() == (tmp_path / "b" / path.relative_to(tmp_path / "a")).read_bytes()


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
