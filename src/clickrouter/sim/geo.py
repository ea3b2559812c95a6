"""Countries of the simulated audience: traffic share, iOS share, zones, carriers.

Shares are rounded orders of magnitude of mobile ad traffic and carrier market
share (public figures, early 2020s), good enough to give the world the skew a
real network sees: a few countries dominate, each with its own carriers, and
the large ones span several time zones. Shares are normalised on use.
"""

from __future__ import annotations

from typing import NamedTuple


class CountrySpec(NamedTuple):
    alpha2: str
    traffic: float  # relative share of mobile ad requests
    ios_share: float  # share of requests from iOS devices
    zones: dict[str, float]  # IANA zone -> share of the country's users
    carriers: dict[str, float]  # carrier name as requests spell it -> market share


COUNTRIES: tuple[CountrySpec, ...] = (
    CountrySpec(
        "IN",
        16,
        0.04,
        {"Asia/Kolkata": 1},
        {"Jio": 0.4, "Airtel": 0.33, "Vi": 0.22, "BSNL": 0.05},
    ),
    CountrySpec(
        "US",
        9,
        0.55,
        {
            "America/New_York": 0.47,
            "America/Chicago": 0.29,
            "America/Denver": 0.07,
            "America/Los_Angeles": 0.17,
        },
        {"Verizon": 0.35, "T-Mobile": 0.33, "AT&T": 0.3, "US Cellular": 0.02},
    ),
    CountrySpec(
        "ID",
        8,
        0.1,
        {"Asia/Jakarta": 0.8, "Asia/Makassar": 0.15, "Asia/Jayapura": 0.05},
        {"Telkomsel": 0.5, "Indosat Ooredoo": 0.25, "XL Axiata": 0.2, "Smartfren": 0.05},
    ),
    CountrySpec(
        "BR",
        7,
        0.12,
        {"America/Sao_Paulo": 0.8, "America/Fortaleza": 0.12, "America/Manaus": 0.08},
        {"Vivo": 0.33, "Claro": 0.33, "TIM": 0.3, "Oi": 0.04},
    ),
    CountrySpec(
        "NG",
        4,
        0.05,
        {"Africa/Lagos": 1},
        {"MTN": 0.5, "Airtel": 0.27, "Glo": 0.2, "9mobile": 0.03},
    ),
    CountrySpec(
        "RU",
        4,
        0.3,
        {
            "Europe/Moscow": 0.7,
            "Asia/Yekaterinburg": 0.15,
            "Asia/Novosibirsk": 0.1,
            "Asia/Vladivostok": 0.05,
        },
        {"MTS": 0.3, "MegaFon": 0.3, "Beeline": 0.25, "Tele2": 0.15},
    ),
    CountrySpec(
        "PK",
        3.5,
        0.03,
        {"Asia/Karachi": 1},
        {"Jazz": 0.4, "Telenor": 0.25, "Zong": 0.25, "Ufone": 0.1},
    ),
    CountrySpec(
        "MX",
        3.5,
        0.2,
        {"America/Mexico_City": 0.85, "America/Tijuana": 0.1, "America/Cancun": 0.05},
        {"Telcel": 0.63, "Movistar": 0.2, "AT&T": 0.17},
    ),
    CountrySpec(
        "BD",
        3,
        0.03,
        {"Asia/Dhaka": 1},
        {"Grameenphone": 0.46, "Robi": 0.3, "Banglalink": 0.22, "Teletalk": 0.02},
    ),
    CountrySpec(
        "JP",
        3,
        0.65,
        {"Asia/Tokyo": 1},
        {"NTT Docomo": 0.43, "au": 0.3, "SoftBank": 0.25, "Rakuten": 0.02},
    ),
    CountrySpec("PH", 2.5, 0.15, {"Asia/Manila": 1}, {"Smart": 0.5, "Globe": 0.45, "DITO": 0.05}),
    CountrySpec(
        "VN",
        2.5,
        0.2,
        {"Asia/Ho_Chi_Minh": 1},
        {"Viettel": 0.55, "Vinaphone": 0.25, "MobiFone": 0.2},
    ),
    CountrySpec(
        "TR",
        2,
        0.2,
        {"Europe/Istanbul": 1},
        {"Turkcell": 0.42, "Vodafone": 0.3, "Turk Telekom": 0.28},
    ),
    CountrySpec(
        "EG",
        2,
        0.1,
        {"Africa/Cairo": 1},
        {"Vodafone": 0.4, "Orange": 0.3, "Etisalat": 0.2, "WE": 0.1},
    ),
    CountrySpec(
        "DE",
        2,
        0.35,
        {"Europe/Berlin": 1},
        {"Telekom": 0.36, "Vodafone": 0.32, "O2": 0.32},
    ),
    CountrySpec(
        "GB",
        2,
        0.5,
        {"Europe/London": 1},
        {"EE": 0.35, "O2": 0.3, "Vodafone": 0.2, "Three": 0.15},
    ),
    CountrySpec(
        "FR",
        2,
        0.3,
        {"Europe/Paris": 1},
        {"Orange": 0.38, "SFR": 0.25, "Bouygues Telecom": 0.2, "Free Mobile": 0.17},
    ),
    CountrySpec(
        "IT",
        1.5,
        0.3,
        {"Europe/Rome": 1},
        {"TIM": 0.3, "Vodafone": 0.3, "WindTre": 0.27, "Iliad": 0.13},
    ),
    CountrySpec(
        "ES",
        1.5,
        0.25,
        {"Europe/Madrid": 0.95, "Atlantic/Canary": 0.05},
        {"Movistar": 0.3, "Orange": 0.27, "Vodafone": 0.25, "MasMovil": 0.18},
    ),
    CountrySpec(
        "TH",
        1.5,
        0.3,
        {"Asia/Bangkok": 1},
        {"AIS": 0.46, "TrueMove H": 0.33, "dtac": 0.21},
    ),
    CountrySpec(
        "KR",
        1.2,
        0.3,
        {"Asia/Seoul": 1},
        {"SK Telecom": 0.47, "KT": 0.3, "LG U+": 0.23},
    ),
    CountrySpec(
        "ZA",
        1.2,
        0.15,
        {"Africa/Johannesburg": 1},
        {"Vodacom": 0.45, "MTN": 0.3, "Cell C": 0.15, "Telkom": 0.1},
    ),
    CountrySpec(
        "CO",
        1.2,
        0.15,
        {"America/Bogota": 1},
        {"Claro": 0.5, "Movistar": 0.25, "Tigo": 0.25},
    ),
    CountrySpec(
        "AR",
        1.2,
        0.15,
        {"America/Argentina/Buenos_Aires": 1},
        {"Claro": 0.4, "Personal": 0.35, "Movistar": 0.25},
    ),
    CountrySpec(
        "SA",
        1,
        0.4,
        {"Asia/Riyadh": 1},
        {"STC": 0.5, "Mobily": 0.3, "Zain": 0.2},
    ),
    CountrySpec(
        "KE",
        1,
        0.05,
        {"Africa/Nairobi": 1},
        {"Safaricom": 0.65, "Airtel": 0.3, "Telkom": 0.05},
    ),
    CountrySpec(
        "CA",
        0.8,
        0.55,
        {
            "America/Toronto": 0.6,
            "America/Vancouver": 0.2,
            "America/Edmonton": 0.12,
            "America/Halifax": 0.08,
        },
        {"Rogers": 0.35, "Bell": 0.3, "Telus": 0.3, "Freedom Mobile": 0.05},
    ),
    CountrySpec(
        "AU",
        0.8,
        0.55,
        {
            "Australia/Sydney": 0.6,
            "Australia/Brisbane": 0.2,
            "Australia/Perth": 0.12,
            "Australia/Adelaide": 0.08,
        },
        {"Telstra": 0.42, "Optus": 0.3, "Vodafone": 0.28},
    ),
    CountrySpec(
        "MY",
        0.8,
        0.25,
        {"Asia/Kuala_Lumpur": 1},
        {"Maxis": 0.35, "CelcomDigi": 0.45, "U Mobile": 0.2},
    ),
    CountrySpec(
        "PL",
        0.8,
        0.25,
        {"Europe/Warsaw": 1},
        {"Orange": 0.27, "Play": 0.3, "Plus": 0.23, "T-Mobile": 0.2},
    ),
    CountrySpec(
        "DZ",
        0.8,
        0.05,
        {"Africa/Algiers": 1},
        {"Mobilis": 0.4, "Djezzy": 0.35, "Ooredoo": 0.25},
    ),
    CountrySpec(
        "UA",
        0.6,
        0.2,
        {"Europe/Kyiv": 1},
        {"Kyivstar": 0.5, "Vodafone": 0.3, "lifecell": 0.2},
    ),
    CountrySpec(
        "MA",
        0.6,
        0.1,
        {"Africa/Casablanca": 1},
        {"Maroc Telecom": 0.4, "Orange": 0.35, "inwi": 0.25},
    ),
    CountrySpec(
        "PE",
        0.6,
        0.1,
        {"America/Lima": 1},
        {"Claro": 0.3, "Movistar": 0.3, "Entel": 0.25, "Bitel": 0.15},
    ),
    CountrySpec(
        "CL",
        0.5,
        0.2,
        {"America/Santiago": 1},
        {"Entel": 0.33, "Movistar": 0.27, "Claro": 0.22, "WOM": 0.18},
    ),
    CountrySpec(
        "NL",
        0.5,
        0.45,
        {"Europe/Amsterdam": 1},
        {"KPN": 0.38, "Vodafone": 0.33, "Odido": 0.29},
    ),
    CountrySpec(
        "GH",
        0.5,
        0.05,
        {"Africa/Accra": 1},
        {"MTN": 0.7, "Telecel": 0.2, "AirtelTigo": 0.1},
    ),
)
