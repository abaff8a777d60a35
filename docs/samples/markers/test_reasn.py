import pytest

@pytest.mark.allow_leaks(reasn="typo")
def test_it():
    pass
