"""TLP markings read by id, TLP 1.0 and 2.0 (DOMAIN.md "Sharing")."""

from __future__ import annotations

import pytest
import stix2

from core.markings import (
    MARKING_ID_BY_TLP,
    THREATBAY_SHARING_EXTENSION,
    granular_tlps,
    most_restrictive,
    normalise_tlp,
    red_recipients,
    tlp_of,
)

TLP1 = {
    "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9": "clear",
    "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da": "green",
    "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82": "amber",
    "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed": "red",
}
TLP2 = {
    "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487": "clear",
    "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb": "green",
    "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421": "amber",
    "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003": "amber+strict",
    "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1": "red",
}


@pytest.mark.parametrize(("marking_id", "tlp"), [*TLP1.items(), *TLP2.items()])
def test_every_domain_md_marking_id_maps_to_its_level(marking_id: str, tlp: str) -> None:
    assert tlp_of({"object_marking_refs": [marking_id]}) == (tlp, False)


def test_tlp1_ids_are_the_ones_stix2_ships() -> None:
    assert stix2.TLP_WHITE.id in TLP1 and TLP1[stix2.TLP_WHITE.id] == "clear"
    assert TLP1[stix2.TLP_RED.id] == "red"


def test_unmarked_and_non_tlp_marked_objects_are_amber_defaulted() -> None:
    assert tlp_of({"type": "indicator"}) == ("amber", True)
    assert tlp_of({"object_marking_refs": []}) == ("amber", True)
    statement = "marking-definition--1d5e1e4c-0e47-4d6e-9a3c-2d1f2c3b4a5e"
    assert tlp_of({"object_marking_refs": [statement]}) == ("amber", True)


def test_several_markings_take_the_most_restrictive_across_versions() -> None:
    green1 = "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"
    strict2 = "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003"
    white1 = "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9"
    assert tlp_of({"object_marking_refs": [green1, strict2, white1]}) == ("amber+strict", False)


def test_tlp2_marking_object_parsed_without_stix2() -> None:
    # stix2 refuses TLP 2.0 marking-definition objects; we read the dict by id.
    obj = {
        "type": "indicator",
        "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
        "object_marking_refs": [MARKING_ID_BY_TLP["amber+strict"]],
    }
    assert tlp_of(obj) == ("amber+strict", False)


def test_most_restrictive_order() -> None:
    assert most_restrictive(["clear", "green"]) == "green"
    assert most_restrictive(["amber", "amber+strict", "green"]) == "amber+strict"
    assert most_restrictive(["red", "clear"]) == "red"
    with pytest.raises(ValueError):
        most_restrictive([])


def test_normalise_tlp_spellings() -> None:
    assert normalise_tlp("TLP:WHITE") == "clear"
    assert normalise_tlp(" Amber+Strict ") == "amber+strict"
    with pytest.raises(ValueError):
        normalise_tlp("tlp:purple")


def test_red_recipients_from_property_and_extension() -> None:
    obj = {
        "x_threatbay_recipients": ["hk-govcert", " gd-cac ", "", 7],
        "extensions": {
            THREATBAY_SHARING_EXTENSION: {
                "extension_type": "property-extension",
                "recipients": ["mo-caric", "hk-govcert"],
            }
        },
    }
    assert red_recipients(obj) == ("gd-cac", "hk-govcert", "mo-caric")
    assert red_recipients({"type": "indicator"}) == ()


def test_granular_tlps_per_selector_most_restrictive() -> None:
    red = "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1"
    green = "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"
    obj = {
        "granular_markings": [
            {"marking_ref": green, "selectors": ["description", "labels.[0]"]},
            {"marking_ref": red, "selectors": ["description"]},
            {"lang": "zh", "selectors": ["name"]},
        ]
    }
    assert granular_tlps(obj) == {"description": "red", "labels.[0]": "green"}
