import pytest

@pytest.mark.allow_leaks(reason=42)
def test_it():
    pass
