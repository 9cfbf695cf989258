"""A SYNTHETIC medical terminology written in MedDRA's ASCII distribution format (issue 17).

MedDRA is licensed; PV Trace never ships it. For tests and the demo this module invents a small terminology
with the same *file format* (``$``-delimited ``llt.asc``, ``pt.asc``, ``hlt.asc``, ``hlt_pt.asc``, ``hlgt.asc``,
``hlgt_hlt.asc``, ``soc.asc``, ``soc_hlgt.asc``, ``mdhier.asc``, ``smq_list.asc``, ``smq_content.asc``,
``meddra_release.asc``) so the real loader and coder run on it:

* codes are our own, in ranges no MedDRA release uses (9xxxxxxx; MedDRA codes are 1xxxxxxx);
* PT names are the public PT names the synthetic world already reports (``sample_data.vocabulary``), with our own
  Chinese and Japanese renderings for the terms patients most often describe (the others keep the English name);
* LLTs are the PT itself plus lay-language synonyms in English, Chinese and Japanese that we wrote, and one
  non-current LLT per language to exercise currency;
* HLTs/HLGTs are invented groupings (named "... (synthetic)"), with a secondary link for Urticaria and
  Angioedema to the allergic HLT so the primary-SOC flag matters;
* three invented SMQs with narrow and broad scope.

``verbatim()`` writes what a patient might type for a PT (filler words, typos, two reactions in one line) and is
the labelled set the coder's precision/recall is measured on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sample_data.vocabulary import PREFERRED_TERMS

VERSION = "90.0"  # a version number MedDRA has not used: a synthetic release
LANGUAGES = {"en": "English", "zh": "Chinese", "ja": "Japanese"}

# PT -> (Chinese name, Japanese name, English lay synonyms, Chinese lay synonyms, Japanese lay synonyms)
COVERED: dict[str, tuple[str, str, tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "Nausea": (
        "恶心",
        "悪心",
        ("felt sick", "feel sick", "sick", "sick to my stomach", "queasy"),
        ("想吐", "反胃"),
        ("吐き気", "むかむか"),
    ),
    "Headache": ("头痛", "頭痛", ("head ache", "my head hurts", "pounding head"), ("头疼", "脑袋疼"), ("頭が痛い",)),
    "Dizziness": (
        "头晕",
        "浮動性めまい",
        ("dizzy", "light headed", "felt dizzy"),
        ("头昏", "晕乎乎"),
        ("めまい", "ふらふら"),
    ),
    "Fatigue": ("疲劳", "疲労", ("tired", "exhausted", "no energy"), ("很累", "乏力"), ("だるい", "疲れ")),
    "Diarrhoea": ("腹泻", "下痢", ("diarrhea", "runny tummy", "loose stools"), ("拉肚子", "拉稀"), ("お腹を下した",)),
    "Rash": ("皮疹", "発疹", ("skin rash", "spots on skin"), ("起疹子", "出疹子"), ("ぶつぶつ", "湿疹が出た")),
    "Pruritus": ("瘙痒症", "そう痒症", ("itchy", "itching", "itchy skin"), ("皮肤痒", "发痒"), ("かゆい", "かゆみ")),
    "Vomiting": ("呕吐", "嘔吐", ("threw up", "throwing up", "puking"), ("吐了",), ("吐いた",)),
    "Abdominal pain": (
        "腹痛",
        "腹痛",
        ("stomach ache", "tummy pain", "belly pain"),
        ("肚子疼", "肚子痛"),
        ("お腹が痛い",),
    ),
    "Insomnia": ("失眠", "不眠症", ("cant sleep", "sleepless"), ("睡不着",), ("眠れない",)),
    "Dyspnoea": (
        "呼吸困难",
        "呼吸困難",
        ("short of breath", "hard to breathe", "breathless"),
        ("喘不上气", "气短"),
        ("息苦しい", "息切れ"),
    ),
    "Cough": ("咳嗽", "咳嗽", ("coughing",), ("一直咳",), ("せきが出る",)),
    "Pyrexia": ("发热", "発熱", ("fever", "high temperature"), ("发烧",), ("熱が出た",)),
    "Myalgia": ("肌痛", "筋肉痛", ("muscle pain", "sore muscles", "muscles ache"), ("肌肉酸痛",), ("筋肉が痛い",)),
    "Constipation": ("便秘", "便秘", ("cant poop", "blocked up"), ("大便干结",), ("便が出ない",)),
    "Hypersensitivity": (
        "超敏反应",
        "過敏症",
        ("allergic reaction", "allergy"),
        ("过敏", "过敏反应"),
        ("アレルギー", "アレルギー反応"),
    ),
    "Urticaria": ("荨麻疹", "蕁麻疹", ("hives", "welts"), ("风团", "起风疙瘩"), ("じんましん",)),
    "Palpitations": ("心悸", "動悸", ("heart racing", "heart pounding"), ("心慌", "心跳很快"), ("ドキドキする",)),
    "Angioedema": (
        "血管性水肿",
        "血管浮腫",
        ("swollen lips", "face swelling"),
        ("嘴唇肿", "脸肿"),
        ("唇が腫れた", "顔が腫れた"),
    ),
    "Anaphylactic reaction": (
        "过敏性反应",
        "アナフィラキシー反応",
        ("anaphylaxis", "anaphylactic shock"),
        ("过敏性休克",),
        ("アナフィラキシー",),
    ),
    "Drug hypersensitivity": (
        "药物过敏",
        "薬物過敏症",
        ("drug allergy", "allergic to the medicine"),
        ("对药过敏",),
        ("薬のアレルギー",),
    ),
    "Erythema": ("红斑", "紅斑", ("skin redness", "red skin"), ("皮肤发红",), ("皮膚が赤い",)),
    "Injection site reaction": (
        "注射部位反应",
        "注射部位反応",
        ("reaction at injection site", "sore arm where injected"),
        ("注射部位红肿", "打针的地方红肿"),
        ("注射したところが腫れた",),
    ),
    "Injection site pain": (
        "注射部位疼痛",
        "注射部位疼痛",
        ("injection site hurts", "arm pain after shot"),
        ("打针的地方疼",),
        ("注射したところが痛い",),
    ),
    "Injection site erythema": (
        "注射部位红斑",
        "注射部位紅斑",
        ("red where injected",),
        ("打针的地方发红",),
        ("注射したところが赤い",),
    ),
    "Injection site haematoma": (
        "注射部位血肿",
        "注射部位血腫",
        ("bruise at injection site",),
        ("打针的地方淤青",),
        ("注射したところにあざ",),
    ),
    "Hepatotoxicity": (
        "肝毒性",
        "肝毒性",
        ("liver damage", "liver toxicity"),
        ("肝损伤", "伤肝"),
        ("肝臓の障害", "肝障害"),
    ),
    "Jaundice": ("黄疸", "黄疸", ("yellow skin", "yellow eyes"), ("皮肤发黄", "眼睛发黄"), ("目が黄色い",)),
    "Hepatic enzyme increased": (
        "肝酶升高",
        "肝酵素上昇",
        ("raised liver enzymes", "high liver enzymes"),
        ("转氨酶高",),
        ("肝臓の数値が高い",),
    ),
    "Somnolence": ("嗜睡", "傾眠", ("drowsy", "sleepy"), ("犯困", "想睡觉"), ("眠気",)),
    "Hypertension": ("高血压", "高血圧", ("high blood pressure",), ("血压高",), ("血圧が高い",)),
    "Oedema peripheral": (
        "外周水肿",
        "末梢性浮腫",
        ("swollen ankles", "swollen legs"),
        ("脚肿", "腿肿"),
        ("足のむくみ",),
    ),
    "Dyspepsia": ("消化不良", "消化不良", ("indigestion", "upset stomach"), ("胃胀不消化",), ("胃もたれ",)),
    "Hypoglycaemia": ("低血糖", "低血糖", ("low blood sugar",), ("血糖低",), ("血糖が低い",)),
    "Haemorrhage": ("出血", "出血", ("bleeding",), ("流血",), ("血が出た",)),
    "Tendonitis": ("肌腱炎", "腱炎", ("sore tendon", "tendon pain"), ("肌腱疼",), ("腱が痛い",)),
}

# Invented HLT groupings: name -> (SOC of the HLT, primary PTs, secondary PTs)
_HLTS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "Allergic conditions (synthetic)": (
        "Immune system disorders",
        ("Hypersensitivity", "Drug hypersensitivity", "Anaphylactic reaction"),
        ("Urticaria", "Angioedema"),
    ),
    "Urticarias and angioedemas (synthetic)": (
        "Skin and subcutaneous tissue disorders",
        ("Urticaria", "Angioedema"),
        (),
    ),
    "Injection site reactions (synthetic)": (
        "General disorders and administration site conditions",
        ("Injection site reaction", "Injection site pain", "Injection site erythema", "Injection site haematoma"),
        (),
    ),
    "Hepatic injuries (synthetic)": (
        "Hepatobiliary disorders",
        ("Hepatotoxicity", "Hepatic function abnormal", "Jaundice"),
        (),
    ),
}

# Invented SMQs: name -> (narrow PTs, broad PTs)
SMQS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "Hypersensitivity (synthetic SMQ)": (
        ("Hypersensitivity", "Drug hypersensitivity", "Anaphylactic reaction", "Angioedema", "Urticaria"),
        ("Rash", "Pruritus", "Erythema", "Dyspnoea"),
    ),
    "Drug-related hepatic disorders (synthetic SMQ)": (
        ("Hepatotoxicity", "Hepatic function abnormal", "Jaundice"),
        ("Alanine aminotransferase increased", "Hepatic enzyme increased"),
    ),
    "Injection site reactions (synthetic SMQ)": (
        ("Injection site reaction", "Injection site pain", "Injection site erythema", "Injection site haematoma"),
        ("Erythema",),
    ),
}

_SOC_ABBREV_LEN = 4


def _codes():
    """Stable invented codes for every level (derived from list order, so a re-run writes identical files)."""
    pts = [t[0] for t in PREFERRED_TERMS if t[0] != "UNKNOWN"]
    socs = sorted({t[1] for t in PREFERRED_TERMS if t[0] != "UNKNOWN"})
    soc_code = {s: 99000001 + i for i, s in enumerate(socs)}
    hlgt_code = {s: 98000001 + i for i, s in enumerate(socs)}  # one invented HLGT per SOC
    pt_code = {p: 96000001 + i for i, p in enumerate(pts)}
    hlt_names = list(_HLTS) + [f"{s} NEC (synthetic)" for s in socs]
    hlt_code = {h: 97000001 + i for i, h in enumerate(hlt_names)}
    return pts, socs, soc_code, hlgt_code, pt_code, hlt_code


def _name(pt: str, lang: str) -> str:
    if lang == "en" or pt not in COVERED:
        return pt
    return COVERED[pt][0] if lang == "zh" else COVERED[pt][1]


def _synonyms(pt: str, lang: str) -> tuple[str, ...]:
    if pt not in COVERED:
        return ()
    return COVERED[pt][{"en": 2, "zh": 3, "ja": 4}[lang]]


def pt_soc() -> dict[str, str]:
    return {t[0]: t[1] for t in PREFERRED_TERMS}


def write_terminology(out: Path, languages: tuple[str, ...] = ("en", "zh", "ja")) -> list[Path]:
    """Write one MedDRA-format ASCII folder per language under ``out/<language>/``; returns the folders.

    SOC/HLGT/HLT/PT codes are shared by every language (as in MedDRA's translations). Lay synonyms do not
    translate one to one, so each language's lay LLTs get codes of their own (a block of 1000 per language)."""
    pts, socs, soc_code, hlgt_code, pt_code, hlt_code = _codes()
    socmap = pt_soc()
    hlt_of: dict[str, list[tuple[str, bool]]] = {p: [] for p in pts}
    for h, (_, prim, sec) in _HLTS.items():
        for p in prim:
            if p in hlt_of:
                hlt_of[p].append((h, True))
        for p in sec:
            if p in hlt_of:
                hlt_of[p].append((h, False))
    for p in pts:
        if not any(primary for _, primary in hlt_of[p]):
            hlt_of[p].append((f"{socmap[p]} NEC (synthetic)", True))
    hlt_soc = {h: v[0] for h, v in _HLTS.items()} | {f"{s} NEC (synthetic)": s for s in socs}
    folders = []
    for li, lang in enumerate(languages):
        d = Path(out) / lang
        d.mkdir(parents=True, exist_ok=True)
        rows: dict[str, list[list]] = {k: [] for k in ("llt", "pt", "hlt", "hlt_pt", "hlgt", "hlgt_hlt", "soc")}
        rows.update(soc_hlgt=[], mdhier=[], smq_list=[], smq_content=[])
        for s in socs:
            rows["soc"].append([soc_code[s], s, s[:_SOC_ABBREV_LEN].capitalize(), "", "", "", "", "", "", ""])
            rows["hlgt"].append([hlgt_code[s], f"{s} (synthetic group)", "", "", "", "", "", "", ""])
            rows["soc_hlgt"].append([soc_code[s], hlgt_code[s]])
        for h, c in hlt_code.items():
            rows["hlt"].append([c, h, "", "", "", "", "", "", ""])
            rows["hlgt_hlt"].append([hlgt_code[hlt_soc[h]], c])
        next_llt = 95000001 + 1000 * li
        for p in pts:
            primary_soc = socmap[p]
            rows["pt"].append([pt_code[p], _name(p, lang), "", soc_code[primary_soc], "", "", "", "", "", "", ""])
            # the PT is also an LLT with the same code (as in MedDRA)
            rows["llt"].append([pt_code[p], _name(p, lang), pt_code[p], "", "", "", "", "", "", "Y", ""])
            if lang != "en" and p in COVERED:  # the English name stays findable in a translated release
                rows["llt"].append([next_llt, p, pt_code[p], "", "", "", "", "", "", "Y", ""])
                next_llt += 1
            for syn in _synonyms(p, lang):
                rows["llt"].append([next_llt, syn, pt_code[p], "", "", "", "", "", "", "Y", ""])
                next_llt += 1
            for h, _ in hlt_of[p]:
                rows["hlt_pt"].append([hlt_code[h], pt_code[p]])
                s = hlt_soc[h]
                rows["mdhier"].append(
                    [
                        pt_code[p],
                        hlt_code[h],
                        hlgt_code[s],
                        soc_code[s],
                        _name(p, lang),
                        h,
                        f"{s} (synthetic group)",
                        s,
                        s[:_SOC_ABBREV_LEN].capitalize(),
                        "",
                        soc_code[primary_soc],
                        "Y" if s == primary_soc else "N",
                    ]
                )
        # one non-current LLT per language: a legacy spelling that must not be used for new coding
        rows["llt"].append(
            [
                next_llt,
                {"en": "Feeling queasy (old)", "zh": "恶心感(旧)", "ja": "悪心感(旧)"}[lang],
                pt_code["Nausea"],
                "",
                "",
                "",
                "",
                "",
                "",
                "N",
                "",
            ]
        )
        for i, (name, (narrow, broad)) in enumerate(SMQS.items()):
            code = 20000001 + i
            rows["smq_list"].append([code, name, 1, f"Invented query: {name}", "synthetic", "", VERSION, "A", "N"])
            for scope, terms in ((2, narrow), (1, broad)):
                for p in terms:
                    if p in pt_code:
                        rows["smq_content"].append([code, pt_code[p], 4, scope, "A", 0, "A", VERSION, VERSION])
        for kind, data in rows.items():
            text = "".join("$".join(str(v) for v in r) + "$\r\n" for r in data)
            (d / f"{kind}.asc").write_text(text, encoding="utf-8", newline="")
        (d / "meddra_release.asc").write_text(f"{VERSION}${LANGUAGES[lang]}$$$$\r\n", encoding="utf-8", newline="")
        folders.append(d)
    return folders


# --------------------------------------------------------------------------------------------
# what patients type
# --------------------------------------------------------------------------------------------

_FILLER = {
    "en": (("", ""), ("i had ", ""), ("", " after the shot"), ("really ", "!!"), ("got ", " since yesterday")),
    "zh": (("", ""), ("吃完药后", ""), ("打针以后", "了"), ("有点", ""), ("", "，很难受")),
    "ja": (("", ""), ("飲んだ後に", ""), ("注射の後、", ""), ("少し", ""), ("", "ました")),
}
_JOIN = {"en": (" and ", ", "), "zh": ("，", "、", "还"), "ja": ("、", "と")}


def _typo(rng: np.random.Generator, text: str) -> str:
    """One keyboard slip in a word of 5+ letters: drop, double or swap a letter (English only)."""
    words = text.split(" ")
    long = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
    if not long:
        return text
    i = long[int(rng.integers(len(long)))]
    w = words[i]
    j = int(rng.integers(1, len(w) - 1))
    kind = int(rng.integers(3))
    w = (
        w[:j] + w[j + 1 :]
        if kind == 0
        else w[:j] + w[j] + w[j:]
        if kind == 1
        else w[: j - 1] + w[j] + w[j - 1] + w[j + 1 :]
    )
    words[i] = w
    return " ".join(words)


def _phrase(rng: np.random.Generator, pt: str, lang: str) -> str:
    options = (*_synonyms(pt, lang), _name(pt, lang))
    text = options[int(rng.integers(len(options)))]
    if lang == "en":
        text = text.lower() if rng.random() < 0.7 else text
        if rng.random() < 0.25:
            text = _typo(rng, text)
    elif len(text) >= 4 and rng.random() < 0.15:  # a dropped character (a slip of the input method)
        j = int(rng.integers(1, len(text) - 1))
        text = text[:j] + text[j + 1 :]
    return text


def verbatim(rng: np.random.Generator, pts: list[str], lang: str, mixed: bool = False) -> str:
    """What a patient writes for one or two reactions (lay synonym or PT name, filler words, typos); ``mixed``:
    the second reaction in English inside Chinese or Japanese text."""
    parts = [_phrase(rng, p, "en" if mixed and i == 1 else lang) for i, p in enumerate(pts)]
    join = _JOIN[lang][int(rng.integers(len(_JOIN[lang])))]
    pre, post = _FILLER[lang][int(rng.integers(len(_FILLER[lang])))]
    return pre + join.join(parts) + post


def labelled_set(seed: int = 17, n_per_language: int = 400) -> list[dict]:
    """Labelled verbatims over the covered PTs: ``{language, verbatim, true_pts}``; 25% name two reactions;
    ``language`` "mixed" is Chinese or Japanese text with an English second reaction."""
    rng = np.random.default_rng(seed)
    covered = sorted(COVERED)
    out = []
    for lang in LANGUAGES:
        for _ in range(n_per_language):
            k = 2 if rng.random() < 0.25 else 1
            pts = [covered[int(i)] for i in rng.choice(len(covered), size=k, replace=False)]
            out.append({"language": lang, "verbatim": verbatim(rng, pts, lang), "true_pts": pts})
    for _ in range(n_per_language // 2):
        lang = ("zh", "ja")[int(rng.integers(2))]
        pts = [covered[int(i)] for i in rng.choice(len(covered), size=2, replace=False)]
        out.append({"language": "mixed", "verbatim": verbatim(rng, pts, lang, mixed=True), "true_pts": pts})
    return out
