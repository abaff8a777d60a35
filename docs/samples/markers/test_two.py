import pytest

@pytest.mark.allow_leaks("one", "two")
def test_it():
    pass
