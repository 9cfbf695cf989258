"""Fixed vocabulary of the synthetic world: markets, manufacturers, products, MedDRA-style terms.

Everything here is hand-written reference data, so the generated world looks like a real
mid-size pharmacovigilance system (real INNs, ATC codes, public MedDRA PT names with their
primary SOC) while staying free of any licensed dictionary. Nothing here is random: the seeded
parts live in ``world.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

# --------------------------------------------------------------------------------------------
# Markets and their subdivisions (where patients live and pharmacies deliver)
# --------------------------------------------------------------------------------------------

#: market -> list of (subdivision code, ISO country, relative population weight, UTC offset).
#: Offsets are standard time; the delivery log writes local time with a fixed offset, which is
#: a valid ISO 8601 instant even where daylight saving time would apply.
SUBREGIONS: dict[str, list[tuple[str, str, float, str]]] = {
    "CN": [
        ("CN-GD", "CN", 0.26, "+08:00"),
        ("CN-SD", "CN", 0.18, "+08:00"),
        ("CN-JS", "CN", 0.17, "+08:00"),
        ("CN-ZJ", "CN", 0.13, "+08:00"),
        ("CN-SC", "CN", 0.14, "+08:00"),
        ("CN-BJ", "CN", 0.12, "+08:00"),
    ],
    "EU": [
        ("DE-BY", "DE", 0.18, "+01:00"),
        ("DE-NW", "DE", 0.24, "+01:00"),
        ("FR-IDF", "FR", 0.17, "+01:00"),
        ("FR-ARA", "FR", 0.11, "+01:00"),
        ("IT-25", "IT", 0.13, "+01:00"),
        ("ES-MD", "ES", 0.09, "+01:00"),
        ("NL-NH", "NL", 0.08, "+01:00"),
    ],
    "US": [
        ("US-CA", "US", 0.30, "-08:00"),
        ("US-TX", "US", 0.23, "-06:00"),
        ("US-FL", "US", 0.17, "-05:00"),
        ("US-NY", "US", 0.16, "-05:00"),
        ("US-IL", "US", 0.14, "-06:00"),
    ],
    "JP": [
        ("JP-13", "JP", 0.38, "+09:00"),
        ("JP-27", "JP", 0.24, "+09:00"),
        ("JP-14", "JP", 0.22, "+09:00"),
        ("JP-23", "JP", 0.16, "+09:00"),
    ],
}

#: share of all patients living in each market
MARKET_SHARE: dict[str, float] = {"CN": 0.34, "EU": 0.30, "US": 0.21, "JP": 0.15}

#: GS1 company prefix of the wholesaler running each market's distribution centres (for SGLNs)
DISTRIBUTOR_PREFIX: dict[str, str] = {"CN": "6901234", "EU": "4012345", "US": "0614141", "JP": "4569951"}


# --------------------------------------------------------------------------------------------
# Manufacturers
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Manufacturer:
    manufacturer_id: str
    name: str
    country: str
    region: str
    gs1_prefix: str  # GS1 company prefix (7 digits) or, for US, the NDC labeler code
    site: str  # main manufacturing site "name, city"
    domain: str


MANUFACTURERS: list[Manufacturer] = [
    Manufacturer(
        "MFR-CN-01",
        "Huaxin Pharmaceutical Co., Ltd.",
        "CN",
        "CN",
        "6923450",
        "Huaxin Suzhou Plant, Suzhou",
        "huaxinpharma.cn",
    ),
    Manufacturer(
        "MFR-CN-02",
        "Jinling Biologics Co., Ltd.",
        "CN",
        "CN",
        "6938812",
        "Jinling Vaccine Base, Nanjing",
        "jinlingbio.cn",
    ),
    Manufacturer(
        "MFR-DE-01",
        "Rheinberg Pharma GmbH",
        "DE",
        "EU",
        "4031247",
        "Rheinberg Werk Leverkusen, Leverkusen",
        "rheinberg-pharma.de",
    ),
    Manufacturer(
        "MFR-FR-01",
        "Laboratoires Valmonde SA",
        "FR",
        "EU",
        "3400936",
        "Valmonde Site de Lyon-Gerland, Lyon",
        "valmonde.fr",
    ),
    Manufacturer(
        "MFR-IE-01", "Corrib Biopharma Ltd", "IE", "EU", "5391520", "Corrib Biologics Campus, Cork", "corribbio.ie"
    ),
    Manufacturer(
        "MFR-US-01",
        "Northfield Therapeutics Inc.",
        "US",
        "US",
        "59572",
        "Northfield Parenterals, Indianapolis",
        "northfieldrx.com",
    ),
    Manufacturer(
        "MFR-US-02",
        "Bayview Generics LLC",
        "US",
        "US",
        "68462",
        "Bayview Solid Dose Plant, Raleigh",
        "bayviewgenerics.com",
    ),
    Manufacturer(
        "MFR-JP-01",
        "Sakuragawa Seiyaku K.K.",
        "JP",
        "JP",
        "4987123",
        "Sakuragawa Shizuoka Plant, Fuji",
        "sakuragawa-seiyaku.co.jp",
    ),
]


# --------------------------------------------------------------------------------------------
# Products
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Product:
    name: str  # brand name as printed
    manufacturer_id: str
    ingredient: str  # INN, lower case
    atc_code: str
    form: str
    strength: str
    route: str
    region: str  # market
    chronic: bool  # monthly refills (True) or one-off courses (False)
    popularity: float  # relative share of prescriptions within its market and kind
    doses_per_week: float  # planned doses per week of use (medication logs)
    weeks_supply: int  # weeks one pack lasts
    shelf_life_months: int
    cold_chain: bool = False  # labelled 2-8 degC storage
    batch_every_days: int = 120  # mean spacing of batch releases (biologics: fewer, larger lots)
    additional_monitoring: bool = False
    #: labelled ADRs: (PT, extra reports per 1000 deliveries, median time to onset in days)
    known_adrs: tuple[tuple[str, float, float], ...] = ()


_INJ_SITE = ("Injection site reaction", 2.0, 0.5)

PRODUCTS: list[Product] = [
    # ---- China (NMPA codes, no GTIN) ------------------------------------------------------
    Product(
        "Huaxin Metformin",
        "MFR-CN-01",
        "metformin",
        "A10BA02",
        "tablet",
        "500 mg",
        "oral",
        "CN",
        True,
        3.0,
        14,
        4,
        36,
        known_adrs=(("Diarrhoea", 4.0, 5), ("Abdominal pain", 2.0, 7)),
    ),
    Product(
        "Anlixin",
        "MFR-CN-01",
        "amlodipine",
        "C08CA01",
        "tablet",
        "5 mg",
        "oral",
        "CN",
        True,
        2.5,
        7,
        4,
        36,
        known_adrs=(("Oedema peripheral", 4.0, 30), ("Flushing", 1.5, 3)),
    ),
    Product(
        "Xintatin",
        "MFR-CN-01",
        "atorvastatin",
        "C10AA05",
        "tablet",
        "20 mg",
        "oral",
        "CN",
        True,
        2.5,
        7,
        4,
        36,
        known_adrs=(("Myalgia", 3.5, 20), ("Hepatic enzyme increased", 1.0, 40)),
    ),
    Product(
        "Leweixin",
        "MFR-CN-01",
        "levofloxacin",
        "J01MA12",
        "tablet",
        "500 mg",
        "oral",
        "CN",
        False,
        2.0,
        7,
        1,
        24,
        known_adrs=(("Tendonitis", 1.5, 6), ("Insomnia", 1.0, 3)),
    ),
    Product(
        "Touxin",
        "MFR-CN-01",
        "ceftriaxone",
        "J01DD04",
        "powder for solution for injection",
        "1 g",
        "intravenous",
        "CN",
        False,
        1.5,
        7,
        1,
        24,
        known_adrs=(("Rash", 3.0, 3), _INJ_SITE),
    ),
    Product(
        "Jinling Flu Vaccine",
        "MFR-CN-02",
        "influenza vaccine (split virion, inactivated)",
        "J07BB02",
        "suspension for injection",
        "0.5 mL",
        "intramuscular",
        "CN",
        False,
        2.2,
        1,
        1,
        12,
        cold_chain=True,
        known_adrs=(("Pyrexia", 4.0, 1), ("Injection site pain", 5.0, 0.5)),
    ),
    Product(
        "Jinling HepB",
        "MFR-CN-02",
        "hepatitis b vaccine (rdna)",
        "J07BC01",
        "suspension for injection",
        "10 µg/0.5 mL",
        "intramuscular",
        "CN",
        False,
        1.0,
        1,
        1,
        24,
        cold_chain=True,
        known_adrs=(("Injection site pain", 4.0, 0.5), ("Pyrexia", 2.0, 1)),
    ),
    Product(
        "Jinling Enoxa",
        "MFR-CN-02",
        "enoxaparin sodium",
        "B01AB05",
        "solution for injection",
        "40 mg/0.4 mL",
        "subcutaneous",
        "CN",
        True,
        1.3,
        7,
        1,
        36,
        known_adrs=(("Haemorrhage", 2.0, 10), ("Injection site haematoma", 3.0, 1)),
    ),
    # ---- EU (GTIN) -------------------------------------------------------------------------
    Product(
        "Rhenopril",
        "MFR-DE-01",
        "ramipril",
        "C09AA05",
        "tablet",
        "5 mg",
        "oral",
        "EU",
        True,
        2.5,
        7,
        4,
        36,
        known_adrs=(("Cough", 5.0, 30), ("Dizziness", 1.0, 7)),
    ),
    Product(
        "Pantorhen",
        "MFR-DE-01",
        "pantoprazole",
        "A02BC02",
        "gastro-resistant tablet",
        "40 mg",
        "oral",
        "EU",
        True,
        2.2,
        7,
        4,
        36,
        known_adrs=(("Headache", 1.5, 5), ("Diarrhoea", 1.0, 10)),
    ),
    Product(
        "Clexarhen",
        "MFR-DE-01",
        "enoxaparin sodium",
        "B01AB05",
        "solution for injection",
        "40 mg/0.4 mL",
        "subcutaneous",
        "EU",
        True,
        1.8,
        7,
        1,
        36,
        batch_every_days=180,
        known_adrs=(("Injection site haematoma", 3.0, 1), ("Haemorrhage", 2.0, 10), _INJ_SITE),
    ),
    Product(
        "Rhenoxacin",
        "MFR-DE-01",
        "amoxicillin + clavulanic acid",
        "J01CR02",
        "film-coated tablet",
        "875 mg/125 mg",
        "oral",
        "EU",
        False,
        2.5,
        14,
        1,
        24,
        known_adrs=(("Diarrhoea", 5.0, 3), ("Rash", 1.5, 5)),
    ),
    Product(
        "Valmodol",
        "MFR-FR-01",
        "paracetamol",
        "N02BE01",
        "tablet",
        "1 g",
        "oral",
        "EU",
        False,
        2.2,
        21,
        1,
        36,
        known_adrs=(("Hepatic enzyme increased", 0.5, 5),),
    ),
    Product(
        "Valsertan",
        "MFR-FR-01",
        "sertraline",
        "N06AB06",
        "film-coated tablet",
        "50 mg",
        "oral",
        "EU",
        True,
        1.6,
        7,
        4,
        36,
        known_adrs=(("Nausea", 3.0, 7), ("Insomnia", 2.0, 14)),
    ),
    Product(
        "Valmovac Grippe",
        "MFR-FR-01",
        "influenza vaccine (surface antigen, inactivated)",
        "J07BB02",
        "suspension for injection in pre-filled syringe",
        "0.5 mL",
        "intramuscular",
        "EU",
        False,
        2.0,
        1,
        1,
        12,
        cold_chain=True,
        known_adrs=(("Injection site pain", 5.0, 0.5), ("Pyrexia", 3.0, 1)),
    ),
    Product(
        "Corrimab",
        "MFR-IE-01",
        "adalimumab",
        "L04AB04",
        "solution for injection in pre-filled pen",
        "40 mg/0.4 mL",
        "subcutaneous",
        "EU",
        True,
        0.8,
        0.5,
        4,
        24,
        cold_chain=True,
        additional_monitoring=True,
        known_adrs=(_INJ_SITE, ("Upper respiratory tract infection", 3.0, 60)),
    ),
    Product(
        "Corriglu",
        "MFR-IE-01",
        "semaglutide",
        "A10BJ06",
        "solution for injection in pre-filled pen",
        "1 mg/0.74 mL",
        "subcutaneous",
        "EU",
        True,
        1.0,
        1,
        4,
        24,
        cold_chain=True,
        additional_monitoring=True,
        known_adrs=(("Nausea", 8.0, 10), ("Vomiting", 4.0, 10), ("Constipation", 2.0, 20)),
    ),
    # ---- US (NDC-based GTIN) ---------------------------------------------------------------
    Product(
        "Glarvion",
        "MFR-US-01",
        "insulin glargine",
        "A10AE04",
        "solution for injection in pre-filled pen",
        "100 units/mL",
        "subcutaneous",
        "US",
        True,
        3.0,
        7,
        4,
        24,
        cold_chain=True,
        batch_every_days=180,
        known_adrs=(("Hypoglycaemia", 5.0, 14), _INJ_SITE),
    ),
    Product(
        "Northcef",
        "MFR-US-01",
        "ceftriaxone",
        "J01DD04",
        "powder for solution for injection",
        "1 g",
        "intramuscular",
        "US",
        False,
        1.0,
        7,
        1,
        24,
        known_adrs=(("Rash", 3.0, 3), ("Injection site pain", 3.0, 0.5)),
    ),
    Product(
        "Northvax Zoster",
        "MFR-US-01",
        "zoster vaccine (recombinant, adjuvanted)",
        "J07BK03",
        "suspension for injection",
        "0.5 mL",
        "intramuscular",
        "US",
        False,
        1.2,
        1,
        1,
        24,
        cold_chain=True,
        known_adrs=(("Injection site pain", 6.0, 0.5), ("Pyrexia", 3.0, 1), ("Myalgia", 2.0, 1)),
    ),
    Product(
        "Lisinova",
        "MFR-US-02",
        "lisinopril",
        "C09AA03",
        "tablet",
        "10 mg",
        "oral",
        "US",
        True,
        2.6,
        7,
        4,
        36,
        known_adrs=(("Cough", 4.0, 30), ("Dizziness", 1.5, 7)),
    ),
    Product(
        "Bayzole",
        "MFR-US-02",
        "omeprazole",
        "A02BC01",
        "delayed-release capsule",
        "20 mg",
        "oral",
        "US",
        True,
        2.0,
        7,
        4,
        36,
        known_adrs=(("Headache", 1.5, 5),),
    ),
    Product(
        "Gabavie",
        "MFR-US-02",
        "gabapentin",
        "N03AX12",
        "capsule",
        "300 mg",
        "oral",
        "US",
        True,
        1.5,
        21,
        4,
        36,
        known_adrs=(("Somnolence", 4.0, 3), ("Dizziness", 3.0, 3)),
    ),
    Product(
        "Azibay",
        "MFR-US-02",
        "azithromycin",
        "J01FA10",
        "film-coated tablet",
        "250 mg",
        "oral",
        "US",
        False,
        2.2,
        6,
        1,
        36,
        known_adrs=(("Diarrhoea", 3.0, 2), ("Nausea", 2.0, 1)),
    ),
    # ---- Japan (GTIN) ----------------------------------------------------------------------
    Product(
        "Sakura Rosuva",
        "MFR-JP-01",
        "rosuvastatin",
        "C10AA07",
        "film-coated tablet",
        "5 mg",
        "oral",
        "JP",
        True,
        2.5,
        7,
        4,
        36,
        known_adrs=(("Myalgia", 3.0, 20), ("Blood creatine phosphokinase increased", 1.0, 30)),
    ),
    Product(
        "Sakura Sita",
        "MFR-JP-01",
        "sitagliptin",
        "A10BH01",
        "film-coated tablet",
        "50 mg",
        "oral",
        "JP",
        True,
        2.0,
        7,
        4,
        36,
        known_adrs=(("Constipation", 1.5, 14),),
    ),
    Product(
        "Olmesakura",
        "MFR-JP-01",
        "olmesartan medoxomil",
        "C09CA08",
        "film-coated tablet",
        "20 mg",
        "oral",
        "JP",
        True,
        2.0,
        7,
        4,
        36,
        known_adrs=(("Dizziness", 2.0, 7),),
    ),
    Product(
        "Sakura Famo",
        "MFR-JP-01",
        "famotidine",
        "A02BA03",
        "orally disintegrating tablet",
        "20 mg",
        "oral",
        "JP",
        False,
        2.5,
        14,
        2,
        36,
        known_adrs=(("Constipation", 2.0, 5), ("Rash", 1.0, 5)),
    ),
    Product(
        "Sakura Epo",
        "MFR-JP-01",
        "epoetin alfa",
        "B03XA01",
        "solution for injection in pre-filled syringe",
        "3000 IU/0.5 mL",
        "subcutaneous",
        "JP",
        True,
        0.8,
        1,
        4,
        24,
        cold_chain=True,
        known_adrs=(("Hypertension", 3.0, 30), _INJ_SITE),
    ),
    Product(
        "Sakura Celox",
        "MFR-JP-01",
        "celecoxib",
        "M01AH01",
        "tablet",
        "100 mg",
        "oral",
        "JP",
        True,
        1.2,
        14,
        4,
        36,
        known_adrs=(("Dyspepsia", 2.0, 7),),
    ),
]


# --------------------------------------------------------------------------------------------
# MedDRA-style preferred terms (public PT names, as in FAERS REAC.pt / VAERS SYMPTOMn)
# --------------------------------------------------------------------------------------------

GI = "Gastrointestinal disorders"
NERV = "Nervous system disorders"
GEN = "General disorders and administration site conditions"
SKIN = "Skin and subcutaneous tissue disorders"
MSK = "Musculoskeletal and connective tissue disorders"
PSY = "Psychiatric disorders"
RESP = "Respiratory, thoracic and mediastinal disorders"
INF = "Infections and infestations"
INV = "Investigations"
CARD = "Cardiac disorders"
VASC = "Vascular disorders"
IMM = "Immune system disorders"
HEP = "Hepatobiliary disorders"
REN = "Renal and urinary disorders"
META = "Metabolism and nutrition disorders"
EYE = "Eye disorders"
EAR = "Ear and labyrinth disorders"
BLOOD = "Blood and lymphatic system disorders"
REPRO = "Reproductive system and breast disorders"
INJ = "Injury, poisoning and procedural complications"
PROD = "Product issues"

#: (PT, primary SOC, seriousness propensity 0..1). Order = background frequency rank: the
#: shared background distribution is Zipf-like over this order (see ``background_weights``).
PREFERRED_TERMS: list[tuple[str, str, float]] = [
    ("Nausea", GI, 0.02),
    ("Headache", NERV, 0.02),
    ("Dizziness", NERV, 0.04),
    ("Fatigue", GEN, 0.02),
    ("Diarrhoea", GI, 0.04),
    ("Drug ineffective", GEN, 0.05),
    ("Rash", SKIN, 0.04),
    ("Pruritus", SKIN, 0.02),
    ("Vomiting", GI, 0.06),
    ("Abdominal pain", GI, 0.06),
    ("Malaise", GEN, 0.03),
    ("Insomnia", PSY, 0.01),
    ("Arthralgia", MSK, 0.02),
    ("Pain in extremity", MSK, 0.02),
    ("Dyspnoea", RESP, 0.15),
    ("Back pain", MSK, 0.02),
    ("Asthenia", GEN, 0.04),
    ("Somnolence", NERV, 0.03),
    ("Cough", RESP, 0.02),
    ("Pyrexia", GEN, 0.06),
    ("Myalgia", MSK, 0.02),
    ("Constipation", GI, 0.02),
    ("Anxiety", PSY, 0.03),
    ("Hypersensitivity", IMM, 0.12),
    ("Urticaria", SKIN, 0.05),
    ("Palpitations", CARD, 0.06),
    ("Oedema peripheral", GEN, 0.04),
    ("Dyspepsia", GI, 0.01),
    ("Abdominal pain upper", GI, 0.03),
    ("Decreased appetite", META, 0.03),
    ("Chest pain", GEN, 0.2),
    ("Paraesthesia", NERV, 0.03),
    ("Hypertension", VASC, 0.08),
    ("Dry mouth", GI, 0.01),
    ("Alopecia", SKIN, 0.01),
    ("Weight increased", INV, 0.01),
    ("Hyperhidrosis", SKIN, 0.01),
    ("Depression", PSY, 0.08),
    ("Vision blurred", EYE, 0.03),
    ("Tremor", NERV, 0.03),
    ("Abdominal distension", GI, 0.01),
    ("Muscle spasms", MSK, 0.02),
    ("Erythema", SKIN, 0.02),
    ("Feeling abnormal", GEN, 0.03),
    ("Hypotension", VASC, 0.12),
    ("Flatulence", GI, 0.0),
    ("Nasopharyngitis", INF, 0.01),
    ("Tinnitus", EAR, 0.02),
    ("Chills", GEN, 0.03),
    ("Influenza like illness", GEN, 0.03),
    ("Oropharyngeal pain", RESP, 0.01),
    ("Dysgeusia", NERV, 0.01),
    ("Weight decreased", INV, 0.03),
    ("Gastrooesophageal reflux disease", GI, 0.02),
    ("Contusion", INJ, 0.02),
    ("Fall", INJ, 0.15),
    ("Urinary tract infection", INF, 0.08),
    ("Nightmare", PSY, 0.01),
    ("Irritability", PSY, 0.01),
    ("Memory impairment", NERV, 0.03),
    ("Dry skin", SKIN, 0.0),
    ("Syncope", NERV, 0.3),
    ("Tachycardia", CARD, 0.1),
    ("Vertigo", EAR, 0.04),
    ("Rhinorrhoea", RESP, 0.0),
    ("Peripheral swelling", GEN, 0.03),
    ("Hot flush", VASC, 0.01),
    ("Muscular weakness", MSK, 0.06),
    ("Migraine", NERV, 0.03),
    ("Hypoaesthesia", NERV, 0.03),
    ("Joint swelling", MSK, 0.02),
    ("Nasal congestion", RESP, 0.0),
    ("Eye pain", EYE, 0.02),
    ("Sinusitis", INF, 0.03),
    ("Blood glucose increased", INV, 0.05),
    ("Bronchitis", INF, 0.08),
    ("Gait disturbance", NERV, 0.08),
    ("Dehydration", META, 0.3),
    ("Confusional state", PSY, 0.2),
    ("Heart rate increased", INV, 0.05),
    ("Dermatitis", SKIN, 0.02),
    ("Musculoskeletal pain", MSK, 0.02),
    ("Neck pain", MSK, 0.02),
    ("Mood altered", PSY, 0.02),
    ("Lethargy", NERV, 0.03),
    ("Blood pressure increased", INV, 0.05),
    ("Haematuria", REN, 0.1),
    ("Epistaxis", RESP, 0.05),
    ("Dysphagia", GI, 0.08),
    ("Stomatitis", GI, 0.03),
    ("Photosensitivity reaction", SKIN, 0.03),
    ("Agitation", PSY, 0.06),
    ("Dry eye", EYE, 0.0),
    ("Libido decreased", REPRO, 0.0),
    ("Pollakiuria", REN, 0.01),
    ("Sleep disorder", PSY, 0.01),
    ("Pneumonia", INF, 0.7),
    ("Atrial fibrillation", CARD, 0.5),
    ("Angioedema", SKIN, 0.5),
    ("Blood creatinine increased", INV, 0.1),
    ("Anaemia", BLOOD, 0.2),
    ("Hyponatraemia", META, 0.5),
    ("Hyperkalaemia", META, 0.4),
    ("Gastrointestinal haemorrhage", GI, 0.8),
    ("Acute kidney injury", REN, 0.8),
    ("Seizure", NERV, 0.7),
    ("Cellulitis", INF, 0.5),
    ("Thrombocytopenia", BLOOD, 0.5),
    ("Neutropenia", BLOOD, 0.5),
    ("Hepatic function abnormal", HEP, 0.3),
    ("Pancreatitis", GI, 0.8),
    ("Cerebrovascular accident", NERV, 0.9),
    ("Myocardial infarction", CARD, 0.95),
    ("Deep vein thrombosis", VASC, 0.7),
    ("Pulmonary embolism", RESP, 0.9),
    ("Anaphylactic reaction", IMM, 0.95),
    ("Stevens-Johnson syndrome", SKIN, 0.95),
    ("Rhabdomyolysis", MSK, 0.9),
    ("Interstitial lung disease", RESP, 0.9),
    ("Hepatotoxicity", HEP, 0.6),
    ("Jaundice", HEP, 0.6),
    ("Drug hypersensitivity", IMM, 0.2),
    ("Product quality issue", PROD, 0.0),
    ("Product use issue", INJ, 0.0),
    ("Off label use", INJ, 0.0),
    ("Incorrect dose administered", INJ, 0.05),
    ("Drug interaction", GEN, 0.2),
    ("Therapeutic product effect decreased", GEN, 0.05),
    ("Loss of consciousness", NERV, 0.6),
    ("Hallucination", PSY, 0.3),
    ("Suicidal ideation", PSY, 0.9),
    ("Haemoglobin decreased", INV, 0.2),
    ("Alanine aminotransferase increased", INV, 0.1),
    ("Hepatic enzyme increased", INV, 0.08),
    ("Blood creatine phosphokinase increased", INV, 0.05),
    ("Hypoglycaemia", META, 0.3),
    ("Haemorrhage", VASC, 0.5),
    ("Oedema", GEN, 0.05),
    ("Flushing", VASC, 0.01),
    ("Tendonitis", MSK, 0.05),
    ("Herpes zoster", INF, 0.1),
    ("Upper respiratory tract infection", INF, 0.03),
    ("Eczema", SKIN, 0.01),
    ("Visual impairment", EYE, 0.1),
    ("Hearing impaired", EAR, 0.1),
    ("Skin exfoliation", SKIN, 0.1),
    ("Sepsis", INF, 0.99),
    # route-specific terms: never drawn in the shared background (an oral tablet has no
    # injection site); they reach cases only as labelled ADRs or planted signals
    ("Injection site reaction", GEN, 0.01),
    ("Injection site pain", GEN, 0.0),
    ("Injection site haematoma", GEN, 0.01),
    ("Injection site erythema", GEN, 0.0),
]

#: PTs excluded from the shared background distribution (route-specific)
ROUTE_SPECIFIC_PTS: frozenset[str] = frozenset(
    {"Injection site reaction", "Injection site pain", "Injection site haematoma", "Injection site erythema"}
)

#: background share forced for a few terms so the planted signals have a known, small base rate
BACKGROUND_SHARE_OVERRIDES: dict[str, float] = {
    "Hepatotoxicity": 0.0050,  # "otherwise rare": base of the planted product signal
    "Drug ineffective": 0.030,  # lack of efficacy is common in spontaneous reports
    "Hypersensitivity": 0.012,
}

#: how reporters spell "no lot": FAERS lot_num junk (see shared/domain/formats.md)
UNKNOWN_LOT_SPELLINGS: tuple[str, ...] = ("UNKNOWN", "UNKNOWN,UNKNOWN", "N/A", "unk", "NOT REPORTED")
