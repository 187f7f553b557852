"""elbokit.registry: one declaration per component, unknown names refused in one line."""

import pytest

from elbokit.errors import ConfigError
from elbokit.registry import Registry


def test_register_lookup_and_help():
    things = Registry("thing")

    @things.register("a", help="the first")
    class A:
        pass

    @things.register("b")
    class B:
        """The second thing.

        More text that is not the help line."""

    assert things["a"] is A and things.get("b") is B
    assert things.names() == ("a", "b") and list(things) == ["a", "b"] and len(things) == 2
    assert "a" in things and "c" not in things
    assert things.help("a") == "the first" and things.help("b") == "The second thing"
    assert things.describe() == "a: the first; b: The second thing"


def test_unknown_name_is_one_line_listing_the_choices():
    things = Registry("thing")
    things.add("a", object())
    with pytest.raises(ConfigError, match=r"^--thing: unknown thing 'z'; choose from a$"):
        things.get("z", hint="--thing")


def test_a_name_registers_once():
    things = Registry("thing")
    things.add("a", 1)
    with pytest.raises(ValueError, match="registered twice"):
        things.add("a", 2)
