"""A SQLAlchemy connection dropped unclosed: only the garbage collector gives it back."""
import sqlalchemy as sa


def test_count_reports():
    engine = sa.create_engine("sqlite:///reports.db")
    conn = engine.connect()
    assert conn.execute(sa.text("select 1")).scalar() == 1
    del conn  # never closed: SQLAlchemy's finaliser checks the connection in
    engine.dispose()
