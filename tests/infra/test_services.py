"""The services' port picking (the services themselves run in tests/test_team.py)."""

from smec.infra import services


def test_the_ports_picked_for_one_start_are_never_the_same_twice():
    # Picked one at a time, about 1 set of 10 in 400 repeated a port on this machine (the
    # kernel hands a just-closed port out again), and SeaweedFS died on its second bind.
    picks = [services.free_ports(10) for _ in range(3000)]
    assert all(len(set(p)) == 10 for p in picks)
