"""A sphinx-gallery image scraper for figures made without pyplot.

sysid's plot functions build :class:`matplotlib.figure.Figure` objects directly (no global pyplot
state), which sphinx-gallery's own matplotlib scraper cannot see. This one saves every Figure (or
the figure of every Axes) that an example's code block left in a global variable, once each.
"""

from __future__ import annotations

from typing import Any

_SEEN: dict[str, set[int]] = {}


def scrape_figures(block: Any, block_vars: dict[str, Any], gallery_conf: dict[str, Any],
                   **kwargs: Any) -> str:
    """Save the new figures of this code block and return their reST."""
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from sphinx_gallery.scrapers import figure_rst

    seen = _SEEN.setdefault(str(block_vars.get("src_file")), set())
    figures = []
    for value in list(block_vars["example_globals"].values()):
        fig = value if isinstance(value, Figure) else value.figure if isinstance(value, Axes) else None
        if fig is not None and id(fig) not in seen:
            seen.add(id(fig))
            figures.append(fig)
    paths = []
    for fig, path in zip(figures, block_vars["image_path_iterator"]):
        fig.savefig(path, dpi=90)
        paths.append(path)
    return figure_rst(paths, gallery_conf["src_dir"])
