"""What the read path knows without SQLAlchemy or alembic agrees with what they know."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from store import queries, reader
from store.errors import mask_url


def test_the_revisions_are_alembics_in_order_and_the_head_is_its_head():
    from store.database import _scripts, head_revision

    scripts = _scripts()
    walked = [s.revision for s in scripts.walk_revisions()]  # head first
    assert queries.REVISIONS == tuple(reversed(walked))
    assert queries.HEAD_REVISION == scripts.get_current_head() == head_revision()


def test_the_selected_columns_are_the_tables():
    from store.schema import events, runs

    assert queries.RUN_COLUMNS == tuple(c.name for c in runs.columns)
    assert queries.EVENT_COLUMNS == tuple(c.name for c in events.columns if c.name != "id")
    assert queries.EventRow._fields == queries.EVENT_COLUMNS


def test_the_readers_busy_timeout_is_the_engines():
    from store.engine import DEFAULT_BUSY_TIMEOUT_MS

    assert reader.DEFAULT_BUSY_TIMEOUT_MS == DEFAULT_BUSY_TIMEOUT_MS


@pytest.mark.parametrize(
    "current, says",
    [
        ((), "is not migrated (at no revision, head is {head}): run `kodr db upgrade`"),
        (("0001",), "is not migrated (at 0001, head is {head}): run `kodr db upgrade`"),
        (("9999",), "is at revision 9999, which this kodr does not know: it was migrated by a newer kodr"),
    ],
)
def test_a_schema_not_at_head_is_refused_in_one_line(current, says):
    refusal = queries.schema_refusal("sqlite:///x.db", current)
    assert refusal is not None
    assert refusal.message.startswith("database sqlite:///x.db ")
    assert says.format(head=queries.HEAD_REVISION) in refusal.message and "\n" not in refusal.message


def test_the_head_is_not_refused():
    assert queries.schema_refusal("sqlite:///x.db", (queries.HEAD_REVISION,)) is None


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://kodr:s3cret@127.0.0.1:1/test",
        "postgresql+psycopg://u:p%40x@h:5/d",
        "postgresql://u:pa:ss@h/d",
        "postgresql://h/d",
        "mysql://u@localhost/db",
        "sqlite:////tmp/x.db",
    ],
)
def test_urls_are_masked_as_sqlalchemy_masks_them(url):
    assert mask_url(url) == sa.make_url(url).render_as_string(hide_password=True)
    assert mask_url(sa.make_url(url)) == mask_url(url)


def test_a_prefix_matches_its_characters_literally():
    assert queries.like_prefix("a_b%c\\") == "a\\_b\\%c\\\\%"
