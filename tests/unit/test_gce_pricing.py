"""Cost estimates of gce_pricing checked against hand calculations from the dated price table."""

import os
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "plugins", "module_utils"))

import gce_pricing  # noqa: E402

PRICE_FILE = os.path.join(ROOT, "roles", "gce_preflight", "files", "prices.yml")


@pytest.fixture(scope="module")
def prices():
    with open(PRICE_FILE, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def test_price_table_is_dated_and_sourced(prices):
    assert prices["date"]
    assert prices["hours_per_month"] == 730
    with open(PRICE_FILE, encoding="utf-8") as handle:
        assert "https://cloud.google.com/compute/gpus-pricing" in handle.read()
    for region in ("us-central1", "europe-west4"):
        table = prices["regions"][region]
        assert table["gpus"]["nvidia-tesla-t4"]["on_demand"] > table["gpus"]["nvidia-tesla-t4"]["spot"]


def test_n1_t4_on_demand_matches_hand_calculation(prices):
    # n1-standard-4 (4 vCPU, 15 GiB) + 1 T4, 100 GiB pd-balanced, ephemeral external IP, us-central1.
    # vCPU 4 x 0.031611 = 0.126444; memory 15 x 0.004237 = 0.063555; T4 0.35; IP 0.005
    # running = 0.544999 $/h -> x 730 = 397.84927; disk 100 x 0.10 = 10.00 $/month
    # hourly incl. disk = 0.544999 + 10/730 = 0.5586976
    cost = gce_pricing.estimate(
        prices, "us-central1-a", "n1-standard-4", 4, 15.0, "nvidia-tesla-t4", 1,
        disks=[{"type": "pd-balanced", "size_gb": 100}], spot=False, external_ip=True,
    )
    assert cost["provisioning_model"] == "STANDARD"
    assert cost["hourly"] == pytest.approx(0.5587, abs=1e-4)
    assert cost["monthly"] == pytest.approx(407.85, abs=0.01)
    assert cost["stopped_monthly"] == pytest.approx(10.00, abs=0.01)
    assert cost["on_demand"]["monthly"] == cost["monthly"]
    # Spot: 4 x 0.00698 + 15 x 0.000936 + 0.14 + 0.0025 = 0.18446 -> x 730 = 134.6558 + 10
    assert cost["spot"]["monthly"] == pytest.approx(144.66, abs=0.01)
    assert "$0.56/hour" in cost["text"] and "$407.85/month" in cost["text"]
    assert "$10.00/month while stopped" in cost["text"]


def test_g2_spot_europe_static_ip_matches_hand_calculation(prices):
    # g2-standard-8 (8 vCPU, 32 GiB, 1 L4 built in), spot, 200 GiB pd-ssd, static IP, europe-west4.
    # vCPU 8 x 0.01099 = 0.08792; memory 32 x 0.001288 = 0.041216; L4 spot 0.246418; IP spot 0.0025
    # running = 0.378054 $/h -> x 730 = 275.97942; disk 200 x 0.187 = 37.40 $/month
    # stopped: disk 37.40 + static address unused 0.01 x 730 = 7.30 -> 44.70
    vcpus, memory, gpu, count = gce_pricing.machine_shape("g2-standard-8")
    cost = gce_pricing.estimate(
        prices, "europe-west4-b", "g2-standard-8", vcpus, memory, gpu, count,
        disks=[{"type": "pd-ssd", "size_gb": 200}], spot=True, external_ip=True, static_ip=True,
    )
    assert cost["provisioning_model"] == "SPOT"
    assert cost["monthly"] == pytest.approx(313.38, abs=0.01)
    assert cost["hourly"] == pytest.approx(0.378054 + 37.40 / 730, abs=1e-4)
    assert cost["stopped_monthly"] == pytest.approx(44.70, abs=0.01)
    # On-demand: 8 x 0.027489 + 32 x 0.00322 + 0.616044 + 0.005 = 0.943996 -> 689.11708 + 37.40
    assert cost["on_demand"]["monthly"] == pytest.approx(726.52, abs=0.01)
    items = {i["item"]: i for i in cost["items"]}
    assert items["gpu"]["unit"] == "nvidia-l4" and items["gpu"]["quantity"] == 1


def test_machine_shapes():
    assert gce_pricing.machine_shape("n1-standard-8") == (8, 30.0, None, 0)
    assert gce_pricing.machine_shape("n1-highmem-2") == (2, 13.0, None, 0)
    assert gce_pricing.machine_shape("a2-highgpu-1g") == (12, 85, "nvidia-tesla-a100", 1)
    assert gce_pricing.machine_shape("g2-standard-24")[2:] == ("nvidia-l4", 2)
    assert gce_pricing.machine_shape("m3-ultramem-32") is None
    api = {"guestCpus": 4, "memoryMb": 15360}
    assert gce_pricing.shape_from_api(api) == (4, 15.0, None, 0)
    api = {"guestCpus": 4, "memoryMb": 16384,
           "accelerators": [{"guestAcceleratorType": "nvidia-l4", "guestAcceleratorCount": 1}]}
    assert gce_pricing.shape_from_api(api) == (4, 16.0, "nvidia-l4", 1)


def test_unknown_region_uses_fallback_and_says_so(prices):
    cost = gce_pricing.estimate(prices, "asia-east1-a", "n1-standard-4", 4, 15.0, "nvidia-tesla-t4", 1)
    assert cost["priced_region"] == "europe-west4"
    assert "no prices for asia-east1" in cost["text"]


def test_unknown_gpu_is_an_error_naming_the_variable_not_a_zero(prices):
    with pytest.raises(gce_pricing.PricingError) as info:
        gce_pricing.estimate(prices, "us-central1-a", "n1-standard-4", 4, 15.0, "nvidia-tesla-k80", 1)
    assert str(info.value).startswith("gce_vm_gpu_type: the price table has no GPU price for nvidia-tesla-k80")
    assert "nvidia-tesla-t4" in str(info.value) and "gce_preflight_price_overrides" in str(info.value)


def test_an_unpriced_builtin_gpu_names_the_machine_type_the_user_chose(prices):
    """A3 Ultra's H200 comes with the machine type: gce_vm_gpu_type was not what the user set."""
    with pytest.raises(gce_pricing.PricingError) as info:
        gce_pricing.estimate(prices, "us-central1-a", "a3-ultragpu-8g", 224, 2952, "nvidia-h200-141gb", 8)
    assert str(info.value).startswith(
        "gce_vm_machine_type: the price table has no GPU price for nvidia-h200-141gb, built into a3-ultragpu-8g")
    assert "gce_vm_gpu_type" not in str(info.value) and "gce_preflight_price_overrides" in str(info.value)


def test_budget_refusal(prices):
    cost = gce_pricing.estimate(
        prices, "us-central1-a", "n1-standard-4", 4, 15.0, "nvidia-tesla-t4", 1,
        disks=[{"type": "pd-balanced", "size_gb": 100}],
    )
    assert gce_pricing.budget_refusal(cost, None) is None
    assert gce_pricing.budget_refusal(cost, 500) is None
    msg = gce_pricing.budget_refusal(cost, 200)
    assert "407.85" in msg and "gce_budget_monthly_usd = 200.00" in msg
    assert "spot" in msg and "144.66" in msg


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(
    vcpus=st.integers(min_value=1, max_value=96),
    gpus=st.sampled_from([0, 1, 2, 4]),
    disk=st.integers(min_value=10, max_value=65536),
    disk_type=st.sampled_from(["pd-standard", "pd-balanced", "pd-ssd"]),
    zone=st.sampled_from(["us-central1-a", "us-east1-c", "europe-west4-b", "asia-east1-a"]),
    static_ip=st.booleans(),
)
def test_estimate_invariants(vcpus, gpus, disk, disk_type, zone, static_ip):
    with open(PRICE_FILE, encoding="utf-8") as handle:
        table = yaml.safe_load(handle)
    cost = gce_pricing.estimate(table, zone, "n1-standard-%d" % vcpus, vcpus, vcpus * 3.75,
                                "nvidia-tesla-t4" if gpus else None, gpus,
                                disks=[{"type": disk_type, "size_gb": disk}], static_ip=static_ip)
    # Spot never costs more than on-demand; stopping never costs more than running.
    assert cost["spot"]["monthly"] <= cost["on_demand"]["monthly"]
    assert cost["stopped_monthly"] <= cost["monthly"] + 7.31
    # A month is 730 hours of the hourly figure (rounding aside).
    assert abs(cost["hourly"] * 730 - cost["monthly"]) < 0.05 + cost["stopped_monthly"] * 0 + 0.0001 * 730
    # The stopped cost is the disk (and a static address), nothing that runs.
    per_gib = table["regions"].get(cost["priced_region"])["disks_gib_month"][disk_type]
    assert cost["stopped_monthly"] == pytest.approx(per_gib * disk + (7.30 if static_ip else 0), abs=0.01)


def _preflight_checks():
    import importlib

    import ansible.module_utils

    utils = os.path.join(ROOT, "plugins", "module_utils")
    if utils not in ansible.module_utils.__path__:
        ansible.module_utils.__path__.append(utils)
    return importlib.import_module("ansible.module_utils.gce_preflight_checks")


def test_builtin_shapes_agree_with_the_one_list_of_gpu_families():
    families = _preflight_checks().BUILTIN_GPU_FAMILIES
    shaped = set()
    for machine_type, (_, _, gpu_type, count) in gce_pricing._BUILTIN_SHAPES.items():
        family = gce_pricing.machine_family(machine_type)
        assert family in families, machine_type
        assert gpu_type in families[family] and count >= 1, machine_type
        shaped.add(family)
    assert shaped == set(families), "families without a single shape: %s" % sorted(set(families) - shaped)


# GPUs of built-in families whose list price the table does not carry: no on-demand price was
# found for A3 Ultra (H200) or A4 (B200), which price collections list as Spot, Flex-start or
# reserved only. Strict, so the entry must go once the table prices them.
UNPRICED_GPUS = {"nvidia-h200-141gb", "nvidia-b200"}


@pytest.mark.parametrize("machine_type", [
    pytest.param(m, marks=pytest.mark.xfail(strict=True, raises=gce_pricing.PricingError,
                                            reason="%s has no price in prices.yml" % s[2]))
    if s[2] in UNPRICED_GPUS else m
    for m, s in sorted(gce_pricing._BUILTIN_SHAPES.items())])
def test_every_builtin_shape_has_a_price_in_us_central1(prices, machine_type):
    vcpus, memory, gpu_type, count = gce_pricing.machine_shape(machine_type)
    cost = gce_pricing.estimate(prices, "us-central1-a", machine_type, vcpus, memory, gpu_type, count,
                                disks=[{"type": "pd-balanced", "size_gb": 100}])
    assert cost["monthly"] > 0


@pytest.mark.parametrize(("machine_type", "hourly"), [
    ("a3-megagpu-8g", 93.40), ("g4-standard-48", 4.50), ("g4-standard-96", 9.00), ("g4-standard-384", 36.00)])
def test_whole_machine_prices_are_the_listed_ones(prices, machine_type, hourly):
    vcpus, memory, gpu_type, count = gce_pricing.machine_shape(machine_type)
    cost = gce_pricing.estimate(prices, "us-central1-a", machine_type, vcpus, memory, gpu_type, count,
                                external_ip=False)
    assert cost["hourly"] == pytest.approx(hourly, abs=0.01)


def test_a3_highgpu_8g_costs_its_listed_price(prices):
    cost = gce_pricing.estimate(prices, "us-central1-a", "a3-highgpu-8g", 208, 1872, "nvidia-h100-80gb", 8,
                                external_ip=False)
    assert cost["hourly"] == pytest.approx(88.49, abs=0.01)
