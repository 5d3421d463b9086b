"""Ingest from sources an attacker or a broken exporter controls: every one ends in a finished run with a
reason, leaves the lock free, serves the previous data of the quarters it could not load, and quotes nothing
it should not (no secret, no oversized text) into the history or the log."""

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from conftest import write_source
from jobs import runtime
from jobs.images import NotAnImage
from jobs.ingest import run_ingest
from models import Banner, CampaignStat, ImpressionCount, IngestRun, Plan
from test_auth import login, users  # noqa: F401  (users is a fixture)
from test_ingest import GOOD, files_of, plans, png_bytes

SECRET = "secret_key=Sup3rS3cretValueThatMustNeverShow"


def ingest(app, source, **kwargs):
    with app.app_context():
        return IngestRun.get_by_id(run_ingest(str(source), trigger="cli", **kwargs))


@pytest.fixture
def loaded(app, tmp_path):
    """A served source (quarters 1-4 good), and the plans it gave."""
    source = write_source(tmp_path / "src", {q: dict(GOOD) for q in (1, 2, 3, 4)}, images={"image_10.png": png_bytes()})
    run = ingest(app, source)
    assert run.status == IngestRun.SUCCEEDED, run.error
    with app.app_context():
        return source, plans()


def changed(source, quarters=(2, 3, 4)):
    """Give the named quarters new data (a different top banner), so a load of them is visible."""
    for q in quarters:
        (source / str(q) / "conversions.csv").write_text("conversion_id,click_id,revenue\n1,4,9.5\n2,2,1.25\n")


def everything_said(app, run, settings_overrides):
    """Every text the run left for people: its error, its file records, and the log file."""
    with app.app_context():
        texts = [run.error or "", run.stage or ""]
        for record in files_of(run.id).values():
            texts += [record.error or "", record.samples or "", record.name]
    texts.append(Path(settings_overrides["log_file"]).read_text())
    return "\n".join(texts)


def assert_finished_and_free(app, run):
    assert run.status not in (IngestRun.QUEUED, IngestRun.RUNNING) and run.finished_at
    with app.app_context():
        assert runtime.lock_holder(runtime.context()) is None


def assert_quarter_kept(app, before, quarter):
    with app.app_context():
        after = plans()
    assert {k: v for k, v in after.items() if k[0] == quarter} == {k: v for k, v in before.items() if k[0] == quarter}


def assert_quarters_loaded(app, before, quarters):
    """The named quarters serve what changed() wrote: campaign 2 earned 9.5."""
    with app.app_context():
        for q in quarters:
            assert CampaignStat.get(quarter=q, campaign_id=2).revenue == 9.5, q


def test_ingest_symlink_to_a_file_outside_the_source_is_refused_and_never_read(app, loaded, tmp_path, settings_overrides):
    source, before = loaded
    secret = tmp_path / "instance-secret.txt"
    secret.write_text(f"banner_id,campaign_id\n{SECRET}\n")
    target = source / "1" / "impressions.csv"
    target.unlink()
    target.symlink_to(secret)
    changed(source)
    run = ingest(app, source)
    assert_finished_and_free(app, run)
    assert "quarter 1" in run.error and "outside the source" in run.error
    assert SECRET not in everything_said(app, run, settings_overrides) and "Sup3r" not in everything_said(app, run, settings_overrides)
    assert_quarter_kept(app, before, 1)
    assert_quarters_loaded(app, before, (2, 3, 4))


def test_ingest_symlink_inside_the_source_is_followed(app, loaded):
    source, before = loaded
    (source / "shared-clicks.csv").write_bytes((source / "1" / "clicks.csv").read_bytes())
    (source / "1" / "clicks.csv").unlink()
    (source / "1" / "clicks.csv").symlink_to(source / "shared-clicks.csv")
    run = ingest(app, source)
    assert run.status == IngestRun.SUCCEEDED, run.error


def test_ingest_image_symlinked_outside_the_source_is_rejected_not_published(app, loaded, tmp_path, settings_overrides):
    source, _ = loaded
    outside = tmp_path / "outside.png"
    outside.write_bytes(png_bytes((9, 9, 9)))
    (source / "images" / "image_11.png").symlink_to(outside)
    run = ingest(app, source)
    assert_finished_and_free(app, run)
    with app.app_context():
        record = files_of(run.id)[(None, "images/")]
        assert ["images/image_11.png"] == [path for path, _ in record.sample_list]
        assert "outside the source" in record.sample_list[0][1]
        assert Banner.get_or_none(Banner.id == 11) is None
    assert not (Path(settings_overrides["image_dir"]) / "11.png").exists()


def test_ingest_fifo_in_place_of_a_file_refuses_its_quarter_at_once_and_loads_the_others(app, loaded):
    source, before = loaded
    fifo = source / "2" / "clicks.csv"
    fifo.unlink()
    os.mkfifo(fifo)  # nobody ever writes to it: opening it to read would block forever
    changed(source, (1, 3, 4))
    run = ingest(app, source)
    assert_finished_and_free(app, run)
    assert "quarter 2" in run.error and "not a regular file" in run.error
    with app.app_context():
        assert "not a regular file" in files_of(run.id)[(2, "clicks.csv")].error
    assert_quarter_kept(app, before, 2)
    assert_quarters_loaded(app, before, (1, 3, 4))


def test_ingest_directory_in_place_of_a_file_refuses_its_quarter_only(app, loaded):
    source, before = loaded
    (source / "2" / "clicks.csv").unlink()
    (source / "2" / "clicks.csv").mkdir()
    changed(source, (1, 3, 4))
    run = ingest(app, source)
    assert_finished_and_free(app, run)
    assert "quarter 2" in run.error and "not a regular file" in run.error
    assert_quarter_kept(app, before, 2)
    assert_quarters_loaded(app, before, (1, 3, 4))


def test_ingest_unreadable_file_refuses_its_quarter_only(app, loaded):
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their mode")
    source, before = loaded
    (source / "3" / "impressions.csv").chmod(0)
    changed(source, (1, 2, 4))
    run = ingest(app, source)
    assert "quarter 3" in run.error
    assert_quarter_kept(app, before, 3)


def test_ingest_huge_header_is_reported_by_its_first_200_characters_only(app, loaded, settings_overrides, users):  # noqa: F811
    source, before = loaded
    (source / "1" / "clicks.csv").write_bytes(b"h" * (19 << 20) + b"\n1,10,1\n")
    run = ingest(app, source)
    assert_finished_and_free(app, run)
    assert "does not match" in run.error
    said = everything_said(app, run, settings_overrides)
    assert "h" * 201 not in said and "h" * 200 in said
    assert_quarter_kept(app, before, 1)
    client = app.test_client()
    login(client, "mel")
    page = client.get("/admin/ingests")
    assert page.status_code == 200 and len(page.data) < 200_000


def test_ingest_utf16_file_is_refused_with_that_reason(app, loaded):
    source, before = loaded
    (source / "1" / "clicks.csv").write_bytes("click_id,banner_id,campaign_id\n1,10,1\n".encode("utf-16"))
    run = ingest(app, source)
    assert "UTF-16" in run.error
    assert_quarter_kept(app, before, 1)


def half_bad_clicks(source, quarter=1):
    good = GOOD["clicks"] + "".join(f"{100 + i},{10 + i % 5},1\n" for i in range(46))
    bad = "".join(f"x{i},10,1\n" for i in range(50))
    (source / str(quarter) / "clicks.csv").write_text("click_id,banner_id,campaign_id\n" + good + bad)


def test_ingest_quarter_over_the_reject_limit_keeps_its_previous_data_and_says_by_how_much(app, loaded):
    source, before = loaded
    half_bad_clicks(source)
    changed(source, (2,))
    run = ingest(app, source)
    assert_finished_and_free(app, run)
    assert run.status == IngestRun.FAILED
    assert "quarter 1" in run.error and "1/clicks.csv" in run.error and "50.0% of its rows rejected" in run.error
    assert "limit 2%" in run.error and "--accept-rejects" in run.error
    assert_quarter_kept(app, before, 1)
    assert_quarters_loaded(app, before, (2,))
    with app.app_context():
        assert ImpressionCount.select().where(ImpressionCount.quarter == 1).count() > 0
        record = files_of(run.id)[(1, "clicks.csv")]
        assert record.rejected == 50 and "reject limit" in record.error


def test_ingest_reject_limit_holds_on_a_first_load_too(app, tmp_path):
    source = write_source(tmp_path / "first", {q: dict(GOOD) for q in (1, 2, 3, 4)})
    half_bad_clicks(source)
    run = ingest(app, source)
    assert "quarter 1" in run.error
    with app.app_context():
        assert not Plan.select().where(Plan.quarter == 1).exists()
        assert Plan.select().where(Plan.quarter == 2).exists()


def test_ingest_accept_rejects_loads_the_quarter_anyway_and_says_so(app, loaded, runner):
    source, before = loaded
    half_bad_clicks(source)
    result = runner.invoke(args=["ingest", str(source), "--accept-rejects"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        run = IngestRun.select().order_by(IngestRun.id.desc()).get()
        assert run.status == IngestRun.SUCCEEDED_WITH_REJECTS and run.accept_rejects
        assert "rejects accepted" in (run.error or "") and "1/clicks.csv" in run.error
        assert plans()[(1, 1)] != before[(1, 1)]
    assert "rejects accepted" in result.output


def test_ingest_reject_limit_is_a_setting(app, loaded, tmp_path, settings_overrides):
    from webapp import create_app

    source, before = loaded
    half_bad_clicks(source)
    lenient = create_app(dict(settings_overrides, ingest_reject_limit_percent=60.0))
    run = ingest(lenient, source)
    assert run.status == IngestRun.SUCCEEDED_WITH_REJECTS, run.error


def test_ingest_file_at_exactly_the_reject_limit_is_accepted(app, loaded):
    # The README: a quarter is refused when "more than" INGEST_REJECT_LIMIT_PERCENT (2) of a file's rows are rejected.
    source, before = loaded
    good = GOOD["clicks"]
    rows = good.count("\n")
    extra = 49 - rows  # 49 good rows and 1 bad: exactly 2.0 %
    assert extra > 0
    good += "".join(f"{100 + i},{10 + i % 5},1\n" for i in range(extra))
    (source / "1" / "clicks.csv").write_text("click_id,banner_id,campaign_id\n" + good + "x1,10,1\n")
    run = ingest(app, source)
    assert run.status == IngestRun.SUCCEEDED_WITH_REJECTS, run.error
    with app.app_context():
        record = files_of(run.id)[(1, "clicks.csv")]
        assert (record.rejected, record.rows_read) == (1, 50) and not record.error


def big_png(width, height):
    out = io.BytesIO()
    Image.new("1", (width, height)).save(out, format="PNG", optimize=True)
    return out.getvalue()


def test_ingest_images_with_bad_names_sizes_or_pixels_are_rejected_and_the_rest_published(app, loaded, settings_overrides):
    source, _ = loaded
    images = source / "images"
    (images / "image_abc.png").write_bytes(png_bytes())
    (images / "image_1000000000000000000000.png").write_bytes(png_bytes())
    (images / "image_0.png").write_bytes(png_bytes())
    (images / "notes.txt").write_bytes(b"hello")
    (images / "image_12.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(6 << 20))  # over 5 MB
    (images / "image_13.png").write_bytes(big_png(5000, 4000))  # 20 M pixels, a few kB
    (images / "image_14.png").write_bytes(png_bytes((4, 5, 6)))
    (images / "image_15.png").mkdir()
    run = ingest(app, source)
    assert_finished_and_free(app, run)
    assert run.status == IngestRun.SUCCEEDED_WITH_REJECTS
    with app.app_context():
        record = files_of(run.id)[(None, "images/")]
        reasons = dict(record.sample_list)
        assert record.loaded == 1 and record.rejected == 7, reasons
        assert "not image_<banner id>" in reasons["images/image_abc.png"]
        assert "beyond 64 bits" in reasons["images/image_1000000000000000000000.png"]
        assert "not image_<banner id>" in reasons["images/notes.txt"]
        assert "larger than" in reasons["images/image_12.png"]
        assert "pixels" in reasons["images/image_13.png"]
        assert "not a regular file" in reasons["images/image_15.png"]
        assert Banner.get_by_id(14).image_name == "14.png"
        assert Banner.get_or_none(Banner.id == 12) is None and Banner.get_or_none(Banner.id == 13) is None
    served = sorted(p.name for p in Path(settings_overrides["image_dir"]).iterdir())
    assert served == ["10.png", "14.png"]


def test_ingest_revenue_with_a_billion_digit_exponent_is_one_rejected_row(app, loaded, settings_overrides):
    source, before = loaded
    path = source / "1" / "conversions.csv"
    rows = "".join(f"{100 + i},1,0.5\n" for i in range(120))  # enough good rows to stay under the reject limit
    path.write_text(path.read_text() + rows + "9,1,1e-999999999\n" + "10,2,１.5\n")
    run = ingest(app, source)
    assert_finished_and_free(app, run)
    assert run.status == IngestRun.SUCCEEDED_WITH_REJECTS, run.error
    with app.app_context():
        record = files_of(run.id)[(1, "conversions.csv")]
        assert record.rejected == 2
        assert [line for line, _ in record.sample_list[:2]] == [124, 125]
        assert "more than 9 decimal places" in record.sample_list[0][1] and "not a number" in record.sample_list[1][1]
        assert CampaignStat.get(quarter=1, campaign_id=1).revenue == 3.75 + 60


def gif_with_a_later_frame(width, height):
    """A real two-frame GIF: a 10x10 screen and first frame, then a frame of width x height (one colour)."""
    small, big = io.BytesIO(), io.BytesIO()
    Image.new("P", (10, 10)).save(small, format="GIF")
    Image.new("P", (width, height)).save(big, format="GIF")
    descriptor = b"\x2c\x00\x00\x00\x00" + width.to_bytes(2, "little") + height.to_bytes(2, "little")
    frame = big.getvalue()[big.getvalue().index(descriptor):-1]  # up to its trailer
    return small.getvalue()[:-1] + frame + b";"


def test_sniff_image_gif_counts_the_pixels_of_every_frame_not_only_the_first():
    from jobs.images import gif_extent, sniff_image

    data = gif_with_a_later_frame(5000, 4000)
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (10, 10)  # what Pillow's header says
    assert gif_extent(data) == (5000, 4000)
    with pytest.raises(NotAnImage, match="20,000,000 pixels"):
        sniff_image(data, max_pixels=16_000_000)
    assert sniff_image(gif_with_a_later_frame(20, 30), max_pixels=16_000_000) == ("gif", "image/gif")
    animated = io.BytesIO()
    frames = [Image.new("P", (40, 30), color) for color in (1, 2, 3)]
    frames[0].save(animated, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert gif_extent(animated.getvalue()) == (40, 30)


def test_ingest_animated_gif_with_a_later_frame_over_the_pixel_limit_is_rejected(app, loaded, settings_overrides):
    source, _ = loaded
    (source / "images" / "image_16.gif").write_bytes(gif_with_a_later_frame(5000, 4000))
    run = ingest(app, source)
    assert run.status == IngestRun.SUCCEEDED_WITH_REJECTS
    with app.app_context():
        reasons = dict(files_of(run.id)[(None, "images/")].sample_list)
        assert "20,000,000 pixels" in reasons["images/image_16.gif"]
        assert Banner.get_or_none(Banner.id == 16) is None


def test_ingest_image_name_with_a_newline_is_escaped_in_the_cli_summary_and_the_log(app, loaded, runner, settings_overrides):
    source, _ = loaded
    forged = "image_17.png: rejected\nIngest run #999: succeeded"
    (source / "images" / forged).write_bytes(b"not an image")
    (source / "images" / "image_18.png").write_bytes(b"not an image either")
    result = runner.invoke(args=["ingest", str(source)])
    lines = result.output.splitlines()
    assert not any(line.startswith("Ingest run #999") for line in lines), result.output
    assert any(repr("images/" + forged) in line for line in lines), result.output
    assert any(line.strip().startswith("images/image_18.png: ") for line in lines), result.output  # plain names stay plain
    log = Path(settings_overrides["log_file"]).read_text()
    assert "\nIngest run #999" not in log
