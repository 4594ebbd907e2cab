"""Stage token layouts: offsets, ranges, round trips, null conditions."""

from __future__ import annotations

import itertools

import pytest
import torch

from musiclm.errors import ConfigError
from musiclm.lm.layout import NUM_SPECIAL, SEP, TokenSpaces, stage_layout

SPACES = TokenSpaces(mulan_levels=3, mulan_codebook=5, semantic_clusters=7, acoustic_codebook=4, coarse_levels=2,
                     fine_levels=3)


def test_vocabularies_are_disjoint_and_complete():
    for stage in ("semantic", "coarse", "fine"):
        layout = stage_layout(stage, SPACES)
        ranges = sorted(layout.vocab.segments().values())
        assert ranges[0][0] == NUM_SPECIAL
        for (_, hi), (lo, _) in itertools.pairwise(ranges):
            assert hi == lo  # contiguous, no overlap
        assert ranges[-1][1] == layout.vocab_size
    assert stage_layout("semantic", SPACES).vocab_size == NUM_SPECIAL + 3 + 3 * 5 + 7
    assert stage_layout("coarse", SPACES).vocab_size == NUM_SPECIAL + 3 + 3 * 5 + 7 + 2 * 4
    assert stage_layout("fine", SPACES).vocab_size == NUM_SPECIAL + 5 * 4


def test_targets_round_trip_and_ranges_follow_levels():
    layout = stage_layout("fine", SPACES)
    values = torch.randint(0, 4, (2, 6, 3))
    ids = layout.encode_targets(values)
    assert ids.shape == (2, 18)
    assert torch.equal(layout.decode_targets(ids), values)
    ranges = layout.target_ranges(6)
    assert ranges.shape == (18, 2)
    assert bool(((ids >= ranges[:, 0]) & (ids < ranges[:, 1])).all())
    # level q of the fine stage is RVQ level coarse_levels + q: its own range, distinct from the others
    assert len({tuple(r) for r in ranges[:3].tolist()}) == 3
    assert torch.equal(ranges[:3], ranges[3:6])


def test_conditions_and_null_tokens():
    semantic = stage_layout("semantic", SPACES)
    mulan = torch.tensor([[0, 4, 2], [1, 1, 1]])
    cond = semantic.condition(mulan)
    assert cond.shape == (2, 4) and bool((cond[:, -1] == SEP).all())
    dropped = semantic.drop_condition(cond, torch.tensor([True, False]))
    assert torch.equal(dropped[1], cond[1])
    assert torch.equal(dropped[0, :3], semantic.null_mulan(1)[0])
    assert not set(dropped[0, :3].tolist()) & set(cond[0, :3].tolist())
    coarse = stage_layout("coarse", SPACES)
    cond = coarse.condition(mulan, torch.tensor([[6, 0], [1, 2]]))
    assert cond.shape == (2, 3 + 2 + 1)
    ablation = stage_layout("coarse", SPACES, semantic_conditioning=False)
    assert ablation.condition(mulan, None).shape == (2, 4)
    fine = stage_layout("fine", SPACES)
    assert fine.condition(torch.randint(0, 4, (2, 5, 2))).shape == (2, 11)


def test_bad_inputs_are_refused():
    semantic = stage_layout("semantic", SPACES)
    with pytest.raises(ConfigError, match="MuLan token"):
        semantic.condition(torch.tensor([[0, 5, 1]]))  # 5 >= codebook size
    with pytest.raises(ConfigError, match="shape"):
        semantic.condition(torch.tensor([[0, 1]]))
    with pytest.raises(ConfigError, match="takes no MuLan"):
        stage_layout("fine", SPACES).mulan_tokens(torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ConfigError, match="target ranges"):
        stage_layout("fine", SPACES).decode_targets(torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ConfigError, match="unknown stage"):
        stage_layout("medium", SPACES)
    with pytest.raises(ConfigError, match="multiple"):
        stage_layout("semantic", TokenSpaces(semantic_rate=30, acoustic_rate=50))


def test_semantic_condition_with_melody_tokens():
    from dataclasses import replace

    spaces = replace(SPACES, melody_levels=2, melody_codebook=4, melody_slots=3)
    layout = stage_layout("semantic", spaces)
    assert layout.vocab_size == stage_layout("semantic", SPACES).vocab_size + 2 + 2 * 4
    mulan = torch.tensor([[0, 4, 2]])
    melody = torch.tensor([[[0, 3], [1, 2], [3, 0]]])
    cond = layout.condition(mulan, melody)
    assert cond.shape == (1, 3 + 3 * 2 + 1) and int(cond[0, -1]) == SEP
    ids = cond[0, 3:-1].tolist()
    lo0, hi0 = layout.vocab.range("melody0")
    lo1, hi1 = layout.vocab.range("melody1")
    assert all(lo0 <= i < hi0 for i in ids[0::2]) and all(lo1 <= i < hi1 for i in ids[1::2])
    null = layout.condition(mulan)  # no melody given: the null melody tokens, same length
    null_lo, null_hi = layout.vocab.range("melody_null")
    assert null.shape == cond.shape and all(null_lo <= i < null_hi for i in null[0, 3:-1].tolist())
    dropped = layout.drop_condition(cond, torch.tensor([True]))  # CFG drops the text, keeps the melody
    assert torch.equal(dropped[0, 3:], cond[0, 3:]) and not torch.equal(dropped[0, :3], cond[0, :3])
    with pytest.raises(ConfigError, match="melody tokens of shape"):
        layout.condition(mulan, torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ConfigError, match="melody token"):
        layout.condition(mulan, torch.full((1, 3, 2), 4))
    with pytest.raises(ConfigError, match="without melody"):
        stage_layout("semantic", SPACES).condition(mulan, melody)
    with pytest.raises(ConfigError, match="melody conditioning needs"):
        replace(SPACES, melody_levels=2).validate()


def test_contour_ids_give_every_level_of_a_frame_its_frames_value():
    from dataclasses import replace

    spaces = replace(SPACES, contour_values=13)
    contour = torch.tensor([[0, 5, 12], [3, 3, 1]])
    semantic = stage_layout("semantic", spaces).contour_ids(contour, 4, 3, 2)
    assert semantic.tolist() == [[0, 0, 0, 1, 6, 13], [0, 0, 0, 4, 4, 2]]  # SEP predicts frame 0
    coarse = stage_layout("coarse", spaces).contour_ids(contour, 4, 3, 2)  # 2 levels a frame
    assert coarse.tolist()[0] == [0, 0, 0, 1, 1, 6, 6, 13, 13]
    assert int(stage_layout("coarse", spaces).contour_ids(None, 4, 3, 2).abs().sum()) == 0
    with pytest.raises(ConfigError, match="without a pitch contour"):
        stage_layout("coarse", SPACES).contour_ids(contour, 4, 3, 2)
    with pytest.raises(ConfigError, match="pitch contour value"):
        stage_layout("semantic", spaces).contour_ids(contour + 1, 4, 3, 2)
    with pytest.raises(ConfigError, match="shape"):
        stage_layout("semantic", spaces).contour_ids(contour, 4, 4, 2)
