"""The scarcity benchmark's own parts, without processes: the people's script is the same for
the same seed, the out-of-order count means what BENCHMARKS.md says, and the simulated policies
do with a tiny hand-made script what one works out on paper."""

from __future__ import annotations

import pytest

from bench.scarcity import busy_losses
from bench.scarcity_metrics import Hold, Outcome, Wait, figures, out_of_order
from bench.scarcity_people import Loss
from bench.scarcity_script import SCALE, Burst, Person, Shape, Step, script
from bench.scarcity_sim import Policy, predecessor, simulate

REFRESH = 10 * SCALE  # the predecessor's "all GPUs busy" page, scaled: 0.222 s


def one_request(email: str, arrival: float, releases: bool, gap: float = 1.0) -> Person:
    return Person(email, arrival, (Burst(0.0, (Step(0.0, gap),)),), releases)


def test_the_same_seed_gives_the_same_people_and_another_seed_others() -> None:
    shape = Shape()
    people = script(7, shape)
    assert people == script(7, shape)
    assert people != script(8, shape)
    assert len(people) == 30 and len({p.email for p in people}) == 30
    arrivals = [p.arrival for p in people]
    assert arrivals == sorted(arrivals) and arrivals[0] >= 0 and arrivals[-1] <= 120
    assert all(p.bursts and p.bursts[0].pause == 0 for p in people)
    assert all(p.planned_seconds < shape.session_max + 30 for p in people)
    long_work = [s for p in people for b in p.bursts for s in b.steps if s.work >= 7]
    assert long_work, "some generations outlast the pressure timeout"


def test_served_out_of_order_means_someone_told_to_wait_first_still_waited() -> None:
    ann = Wait("ann@example.com", asked_at=0.0, first=True, seen_waiting_at=1.0, started_at=10.0)
    bob = Wait("bob@example.com", asked_at=2.0, first=True, seen_waiting_at=2.1, started_at=5.0)
    assert out_of_order([ann, bob]) == [bob]
    # In the same dispatcher turn as ann's, or ann was not yet known to wait: in order.
    same_turn = Wait("ann@example.com", 0.0, True, seen_waiting_at=1.0, started_at=5.5)
    assert out_of_order([same_turn, bob]) == []
    early = Wait("cat@example.com", asked_at=0.5, first=True, started_at=5.0)
    assert out_of_order([ann, early]) == []
    # Someone who never got one within the run still waited.
    never = Wait("ann@example.com", 0.0, True, seen_waiting_at=1.0)
    assert out_of_order([never, bob]) == [bob]


def test_figures_count_gpu_seconds_to_the_end_of_the_run() -> None:
    outcome = Outcome("p", run_seconds=10.0)
    outcome.holds = [Hold("ann@example.com", 0.0, 4.0), Hold("bob@example.com", 4.0, None)]
    outcome.waits = [
        Wait("ann@example.com", 0.0, True, started_at=0.0, ready_at=0.5),
        Wait("bob@example.com", 1.0, True, seen_waiting_at=1.1, started_at=4.0, ready_at=5.0),
        Wait("cat@example.com", 2.0, True, seen_waiting_at=2.1),
    ]
    outcome.left_at = {"ann@example.com": 3.0}
    found = figures(outcome)
    assert (found.gpu_seconds, found.gpu_seconds_after_leaving, found.most_at_once) == (
        10.0,
        1.0,
        1,
    )
    assert (found.served, found.still_waiting, found.longest_unserved) == (2, 1, 8.0)
    assert (found.wait_p50, found.wait_max, found.gpu_seconds_per_served) == (0.5, 4.0, 5.0)


def test_the_predecessor_reclaims_a_walked_away_webui_at_a_cruiser_pass_after_the_timeout() -> None:
    # Ann uses her WebUI at 0.5 and walks away; bob waits from 2.1 on the refreshing page.
    people = (
        one_request("ann@example.com", 0.5, releases=False),
        one_request("bob@example.com", 2.1, releases=True),
    )
    outcome = simulate(people, predecessor(startup=0.0), gpus=1, until=40.0)
    ann, bob = outcome.waits
    # Idle since 0.5: the first cruiser pass (every 6.67 s) at or after 20.5 s is the fourth.
    cruiser_pass = 4 * 300 * SCALE
    first_refresh_after = 2.1 + 111 * REFRESH
    assert ann.started_at == 0.5 and bob.seen_waiting_at == 2.1
    assert bob.started_at == pytest.approx(first_refresh_after)
    held = outcome.holds[0]
    assert held.email == "ann@example.com" and held.end == pytest.approx(cruiser_pass)
    found = figures(outcome)
    assert found.gpu_seconds == pytest.approx(cruiser_pass - 0.5 + 1.0, abs=0.1)
    assert found.gpu_seconds_after_leaving == pytest.approx(cruiser_pass - 1.5, abs=0.1)
    assert (found.served, found.out_of_order, found.busy_reclaimed) == (2, 0, 0)


def test_the_refresh_race_serves_out_of_order_where_the_queue_does_not() -> None:
    # Ann generates until 2.15 and gives back; bob waits from 1.0, cat from 1.1. Cat's
    # refresh at 1.1 + 5 x 0.222 = 2.211 comes before bob's at 1.0 + 6 x 0.222 = 2.333.
    ann = Person("ann@example.com", 0.0, (Burst(0.0, (Step(2.15, 0.0),)),), releases=True)
    people = (
        ann,
        one_request("bob@example.com", 1.0, True),
        one_request("cat@example.com", 1.1, True),
    )
    race = simulate(people, predecessor(startup=0.0), gpus=1, until=20.0)
    by_email = {w.email: w for w in race.waits}
    assert by_email["cat@example.com"].started_at == pytest.approx(1.1 + 5 * REFRESH)
    assert [w.email for w in out_of_order(race.waits)] == ["cat@example.com"]
    queue = Policy("queue", True, 3.0, 20.0, 6.0, 1.0, startup=0.0)
    fifo = simulate(people, queue, gpus=1, until=20.0)
    by_email = {w.email: w for w in fifo.waits}
    assert by_email["bob@example.com"].started_at == pytest.approx(2.15)
    assert out_of_order(fifo.waits) == []


def test_a_long_generation_is_never_reclaimed_but_a_long_pause_is_under_pressure() -> None:
    # Ann generates for 10 s, pauses 8 s, then comes back; bob waits all along.
    bursts = (Burst(0.0, (Step(10.0, 0.5),)), Burst(8.0, (Step(0.0, 0.5),)))
    people = (
        Person("ann@example.com", 0.0, bursts, releases=True),
        one_request("bob@example.com", 1.0, releases=True, gap=2.0),
    )
    queue = Policy("queue", True, 3.0, 20.0, 6.0, 1.0, startup=0.0)
    outcome = simulate(people, queue, gpus=1, until=60.0)
    found = figures(outcome)
    assert (found.busy_reclaimed, found.reclaimed_in_pause) == (0, 1)
    ann_back = [w for w in outcome.waits if w.email == "ann@example.com" and not w.first]
    assert len(ann_back) == 1 and ann_back[0].asked_at == pytest.approx(18.5)


def test_a_generation_cut_by_a_reclaim_counts_as_busy_though_it_came_after_a_pause() -> None:
    def loss(email: str, asked_at: float, answered_at: float) -> Loss:
        return Loss(email, "pause", asked_at, answered_at, f"{email} at {answered_at}")

    losses = [loss("ann@example.com", 10.0, 10.3), loss("bob@example.com", 20.0, 20.1)]
    stopped_while_working = [("ann@example.com", 10.2), ("cat@example.com", 30.0)]
    busy, in_pause = busy_losses(losses, stopped_while_working)
    assert [lost.email for lost in in_pause] == ["bob@example.com"]
    assert len(busy) == 2 and busy[0].startswith("ann@example.com at 10.3")
    assert busy[1].startswith("cat@example.com at 30.0")
