"""keel.ckpt's memory tier from the worker's side, against a stand-in for the agent's slot
protocol (the real agent is tested end to end in tests/test_ckpt_e2e.py): round trips of
nested state through the slots, zero-copy restore that is safe to modify, the two-phase save
used for CUDA tensors (run here with CPU tensors)."""

import os

import pytest
import torch

from agent_standin import standin_agent as agent  # noqa: F401 (a fixture)
from keel.ckpt import Checkpointer
from test_ckpt import same, state_with_everything


def test_saves_go_to_alternating_slots_and_restore_from_memory(agent, tmp_path):
    ckpt = Checkpointer(tmp_path / "ckpt")
    state = state_with_everything()
    ckpt.save(1, state, persist=False)
    state["step"] = 2
    ckpt.save(2, state)
    assert [r.split()[0] for r in agent.requests] == ["ckpt-begin", "ckpt-saved"] * 2
    assert agent.steps == [1, 2]
    assert not os.listdir(tmp_path / "ckpt")  # persisting is the agent's job
    step, got = ckpt.load()
    assert step == 2 and ckpt.loaded_from == "memory"
    assert same(state, got)
    # The restored tensors point into the slot, copy-on-write: modifying them changes
    # neither the slot nor the next restore.
    got["tensors"]["float32"].fill_(-1)
    step, again = ckpt.load()
    assert step == 2 and same(state, again)
    # The next save goes to the other slot, the one after replaces the restored slot's file.
    state["step"] = 3
    ckpt.save(3, state)
    state["step"] = 4
    ckpt.save(4, state)
    assert sorted(agent.steps) == [3, 4]
    assert not torch.equal(again["tensors"]["float32"], torch.full_like(
        again["tensors"]["float32"], -1))
    assert same(state, ckpt.load()[1])


def test_two_phase_copy_path_round_trips(agent, tmp_path):
    ckpt = Checkpointer(tmp_path / "ckpt")
    state = state_with_everything()
    from keel.ckpt._state import flatten
    structure, tensors = flatten(state)
    assert ckpt._save_by_copy(5, tensors, {"keel.structure": structure}, persist=False)
    step, got = ckpt.load()
    assert step == 5 and ckpt.loaded_from == "memory" and same(state, got)


def test_begin_save_rejects_bad_layouts(agent, tmp_path):
    ckpt = Checkpointer(tmp_path / "ckpt")
    with pytest.raises(ValueError, match="negative dimension"):
        ckpt._c.begin_save(1, [("w", "float32", [-1])], {})
    with pytest.raises(ValueError, match="appears twice"):
        ckpt._c.begin_save(1, [("w", "float32", [1]), ("w", "float32", [1])], {})
    with pytest.raises(ValueError):
        ckpt._c.begin_save(1, [("w", "complex", [1])], {})
    with pytest.raises(ValueError, match="without a successful BeginSave"):
        ckpt._c.finish_save(True)
    ckpt.save(1, {"w": torch.ones(3)})  # still usable
    assert ckpt.load()[0] == 1


def test_a_missing_agent_means_saving_to_disk(monkeypatch, tmp_path, capfd):
    monkeypatch.setenv("KEEL_SHM_DIR", "/dev/shm")
    monkeypatch.setenv("KEEL_AGENT_SOCKET", "@keel-nobody-listens-here")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    ckpt = Checkpointer(tmp_path / "ckpt")
    ckpt.save(1, {"w": torch.ones(2)})  # the agent is gone: saved to disk instead
    assert (tmp_path / "ckpt" / "step-1" / "rank-0.safetensors").exists()
    assert "memory tier is unavailable" in capfd.readouterr().err
