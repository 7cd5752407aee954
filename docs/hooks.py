"""MkDocs hooks of the manual (mkdocs.yml `hooks:`; excluded from the site by `exclude_docs`).

The CLI reference is generated here from the Typer app, with Typer's own Markdown generator (what
`typer pltd.pipeline.cli utils docs` prints), and put into the page's Markdown before it is rendered.
mkdocs-typer2 0.4 does the same through a subprocess but renders the result outside the page's
Markdown, where `pltd build [OPTIONS] [manifest]` reads as a cross-reference and fails the strict
build (and its in-process engine does not run with this Typer); a failure here stops the build.
"""

from __future__ import annotations

MARKER = "<!-- pltd-cli-reference -->"


def cli_markdown() -> str:
    import click
    from typer.cli import get_docs_for_click
    from typer.main import get_command

    from pltd.pipeline.cli import app

    command = get_command(app)
    return get_docs_for_click(obj=command, ctx=click.Context(command), indent=1, name="pltd").strip() + "\n"


def on_page_markdown(markdown, page, config, files):
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, cli_markdown())
    return markdown
