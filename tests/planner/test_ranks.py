"""planned_on_rank0 without a process group: the order of planning and joining, and the error path."""

from __future__ import annotations

import dataclasses
import json

import pytest

from simclr.config import Config
from simclr.config_io import config_to_dict
from simclr.errors import InputError
from simclr.planner import ranks


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """torchrun's variables for a world of two, and a record of what the process-group calls were."""
    events: list[str] = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(ranks.dist, "init_process_group", lambda *a: events.append("join"))
    monkeypatch.setattr(ranks.dist, "destroy_process_group", lambda **k: events.append("leave"))
    return events


def _planned() -> Config:
    base = Config()
    return dataclasses.replace(base, train=dataclasses.replace(base.train, batch_size=96, time_budget=7.5))


def test_a_world_of_one_plans_and_joins_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(ranks.dist, "init_process_group", lambda *a: pytest.fail("joined a group"))
    assert ranks.planned_on_rank0(_planned, Config()) == _planned()


def test_rank0_plans_before_it_joins_and_sends_the_config_as_json(monkeypatch: pytest.MonkeyPatch,
                                                                  world: list[str]) -> None:
    monkeypatch.setenv("RANK", "0")
    sent: list[str] = []

    def broadcast(text: str | None, device: object) -> str:
        assert text is not None
        sent.append(text)
        return text

    monkeypatch.setattr(ranks.dist, "broadcast_text", broadcast)
    got = ranks.planned_on_rank0(lambda: world.append("plan") or _planned(), Config())
    assert world == ["plan", "join"]  # no trial step may meet another rank's collective
    assert got == _planned()
    assert json.loads(sent[0]) == {"config": config_to_dict(_planned())}


@pytest.mark.parametrize("error", [InputError("no images in photos/\nsee the docs"),
                                   RuntimeError("trial step failed\nin conv1")])
def test_rank0_raises_its_own_error_after_telling_the_others(monkeypatch: pytest.MonkeyPatch,
                                                             world: list[str], error: Exception) -> None:
    monkeypatch.setenv("RANK", "0")
    sent: list[str] = []
    monkeypatch.setattr(ranks.dist, "broadcast_text", lambda text, device: sent.append(text) or text)

    def fails() -> Config:
        raise error

    with pytest.raises(type(error)) as raised:
        ranks.planned_on_rank0(fails, Config())
    assert raised.value is error  # its own exception, traceback and all, not the others' one-line message
    assert json.loads(sent[0]) == {"error": " ".join(str(error).split())}  # one line for the others
    assert world == ["join", "leave"]


def test_another_rank_never_plans_and_hears_the_config_or_the_error(monkeypatch: pytest.MonkeyPatch,
                                                                   world: list[str]) -> None:
    monkeypatch.setenv("RANK", "1")
    reply = {"config": config_to_dict(_planned())}

    def broadcast(text: str | None, device: object) -> str:
        assert text is None  # only rank 0 speaks
        return json.dumps(reply)

    monkeypatch.setattr(ranks.dist, "broadcast_text", broadcast)
    assert ranks.planned_on_rank0(lambda: pytest.fail("rank 1 planned"), Config()) == _planned()
    reply = {"error": "no images in photos/"}
    with pytest.raises(InputError, match="^rank 0 could not plan the recipe: no images in photos/$"):
        ranks.planned_on_rank0(lambda: pytest.fail("rank 1 planned"), Config())
    assert world == ["join", "join", "leave"]
