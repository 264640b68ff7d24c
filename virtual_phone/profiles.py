"""Snapdragon phone profiles: the system properties, banner and Hexagon arch of each SoC we emulate.

One entry per SoC of docs/architecture.md's table; adding a SoC means adding one `Profile` here.
"""

from __future__ import annotations

from dataclasses import dataclass

from hexfleet.errors import InvalidRequest

# `ro.product.cpu.abilist` by primary ABI.
ABI_LISTS = {"x86_64": "x86_64,x86", "arm64-v8a": "arm64-v8a,armeabi-v7a,armeabi"}

# The transport features this virtual phone implements (sent in its CNXN banner).
FEATURES = ["shell_v2", "stat_v2", "ls_v2", "fixed_push_mkdir"]


@dataclass(frozen=True)
class Profile:
    """What tells one Snapdragon phone model from another."""

    soc: str
    marketing_name: str
    phone_name: str
    htp_arch: str
    board: str
    manufacturer: str
    model: str
    device: str
    product: str
    android_release: str
    sdk: int
    storage_gb: int
    serial_prefix: str

    def properties(self, serialno: str, abi: str = "x86_64") -> dict[str, str]:
        """The answer of `getprop` on this phone; `abi` is what its CPU runs (x86_64 for a phone
        that runs the host's programs natively, arm64-v8a under qemu-user, as a real phone)."""
        fingerprint = (
            f"samsung/{self.product}/{self.device}:{self.android_release}/"
            f"UP1A.231005.007/{self.model[3:]}:user/release-keys"
        )
        return {
            "ro.board.platform": self.board,
            "ro.boot.hardware": "qcom",
            "ro.build.characteristics": "phone",
            "ro.build.fingerprint": fingerprint,
            "ro.build.type": "user",
            "ro.build.version.release": self.android_release,
            "ro.build.version.sdk": str(self.sdk),
            "ro.hardware": "qcom",
            "ro.hexfleet.htp_arch": f"v{self.htp_arch}",
            "ro.hexfleet.virtual": "1",
            "ro.product.board": self.board,
            "ro.product.brand": "samsung",
            "ro.product.cpu.abi": abi,
            "ro.product.cpu.abilist": ABI_LISTS[abi],
            "ro.product.device": self.device,
            "ro.product.manufacturer": self.manufacturer,
            "ro.product.marketname": self.phone_name,
            "ro.product.model": self.model,
            "ro.product.name": self.product,
            "ro.serialno": serialno,
            "ro.soc.manufacturer": "QTI",
            "ro.soc.model": self.soc,
            "sys.boot_completed": "1",
        }

    def serialno(self, index: int) -> str:
        """A stable, unique-per-index serial number (what `ro.serialno` answers)."""
        return f"{self.serial_prefix}{index:06d}"


PROFILES: dict[str, Profile] = {
    "SM8450": Profile(
        soc="SM8450",
        marketing_name="Snapdragon 8 Gen 1",
        phone_name="Galaxy S22",
        htp_arch="69",
        board="taro",
        manufacturer="samsung",
        model="SM-S901U",
        device="r0q",
        product="r0qsqw",
        android_release="14",
        sdk=34,
        storage_gb=128,
        serial_prefix="HXV8450",
    ),
    "SM8550": Profile(
        soc="SM8550",
        marketing_name="Snapdragon 8 Gen 2",
        phone_name="Galaxy S23",
        htp_arch="73",
        board="kalama",
        manufacturer="samsung",
        model="SM-S911U",
        device="dm1q",
        product="dm1qsqw",
        android_release="14",
        sdk=34,
        storage_gb=256,
        serial_prefix="HXV8550",
    ),
    "SM8650": Profile(
        soc="SM8650",
        marketing_name="Snapdragon 8 Gen 3",
        phone_name="Galaxy S24",
        htp_arch="75",
        board="pineapple",
        manufacturer="samsung",
        model="SM-S921U",
        device="e1q",
        product="e1qsqw",
        android_release="14",
        sdk=34,
        storage_gb=256,
        serial_prefix="HXV8650",
    ),
    "SM8750": Profile(
        soc="SM8750",
        marketing_name="Snapdragon 8 Elite",
        phone_name="Galaxy S25",
        htp_arch="79",
        board="sun",
        manufacturer="samsung",
        model="SM-S931U",
        device="pa1q",
        product="pa1qsqw",
        android_release="15",
        sdk=35,
        storage_gb=256,
        serial_prefix="HXV8750",
    ),
}


def get_profile(name: str) -> Profile:
    """Look a profile up by SoC name, case-insensitively (`sm8550` or `SM8550`)."""
    profile = PROFILES.get(name.strip().upper())
    if profile is None:
        known = ", ".join(sorted(PROFILES))
        raise InvalidRequest(f"unknown phone profile {name!r}; known profiles: {known}")
    return profile


def parse_profiles(text: str) -> list[Profile]:
    """Parse a comma-separated profile list such as `sm8550,sm8650`."""
    names = [item for item in (part.strip() for part in text.split(",")) if item]
    if not names:
        raise InvalidRequest("the profile list is empty")
    return [get_profile(name) for name in names]
