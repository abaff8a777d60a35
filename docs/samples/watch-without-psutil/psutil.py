"""An environment without psutil: `connleak watch` run in this folder cannot import it."""

raise ImportError("No module named 'psutil'", name="psutil")
