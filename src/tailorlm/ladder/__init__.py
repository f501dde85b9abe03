"""The ladder: every way of answering (a rung) behind one interface, compared on one golden suite."""

from tailorlm.callables import callable_package  # noqa: E402  (`tailorlm.ladder(...)` calls tailorlm.api.ladder)

callable_package(__name__)
