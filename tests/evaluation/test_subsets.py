from custom.evaluation.subsets import evenly_spaced


def test_evenly_spaced_subset_keeps_the_ends() -> None:
    items = [{"index": i} for i in range(20)]
    assert [item["index"] for item in evenly_spaced(items, 5)] == [0, 5, 10, 14, 19]
    assert evenly_spaced(items, None) == items


def test_the_documented_subsets_are_every_other_test_slab_and_the_first_for_one() -> None:
    # score_model.py --max-slices 14 and benchmark_quality.py --max-test-slices 14 on the 27 L067 test slabs
    assert evenly_spaced(list(range(27)), 14) == list(range(0, 27, 2))
    assert evenly_spaced(list(range(27)), 1) == [0]
    assert evenly_spaced(list(range(3)), 7) == [0, 1, 2]
