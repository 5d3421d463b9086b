"""The slot page built from its skeleton is the page the template renders."""

import pytest
from flask import render_template, url_for

from webapp.slots import slot_page


@pytest.mark.parametrize("campaign_id, banner_id, image_name, quarter", [
    (1, 100, "100.png", 1), (7, 2**63 - 1, None, 4), (10_000, 123_456, "123456.jpg", 2), (3, 5, "", 3),
    (42, 4242, "4242.webp", 1),
])
def test_slot_page_equals_the_rendered_template(app, campaign_id, banner_id, image_name, quarter):
    with app.test_request_context("/campaigns/1"):
        href = url_for("clicks.click", token="0clicktoken0")
        cache = {}
        for _ in range(2):  # the second comes from the cached skeleton
            built = slot_page(cache, campaign_id, banner_id, image_name, quarter, href)
            expected = render_template("public/campaign.html", campaign_id=campaign_id, banner_id=banner_id,
                                       image_name=image_name, quarter=quarter, click_href=href)
            assert built == expected
        assert len(cache) == 1
