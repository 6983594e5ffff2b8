"""Indonesian personal names with regional flavour, drawn as whole columns.

Data tables are plain tuples (the generic pool comes from Faker's id_ID locale). Styles follow
well-known naming customs: single names common in Java, Balinese birth-order names for Hindus,
Batak, Minahasa, Ambonese, Timorese and Papuan family names, Bugis "Andi", Chinese-Indonesian
names among Buddhists and Konghucu.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from faker.providers.person.id_ID import Provider as _FakerIdPerson

from simulator.generators.columns import join, take

# --- given names by style and gender (male / female pools are disjoint) ----------------------
# The name tables stay a few lines each (the formatter would put one name per line).
# fmt: off
JAVANESE_MALE = (
    "SLAMET", "SUTRISNO", "BAMBANG", "AGUS", "BUDI", "JOKO", "SURYADI", "SUGIARTO", "HADI", "WAHYU",
    "EKO", "HERU", "TEGUH", "BAYU", "YUDI", "PURNOMO", "SUMARNO", "SUPRIYADI", "SUPARMAN", "WIDODO",
    "RAHMAT", "ARIF", "RIZKI", "FAJAR", "DIMAS", "GALIH", "ANTON", "SUGENG", "PRIYO", "WAWAN",
    "SETYO", "DANANG", "BAGUS", "ARIS", "HARIYANTO", "MUHAMMAD", "AHMAD", "NUR CAHYO", "ADITYA",
    "YOGA", "ILHAM", "FERDI", "KUSNADI", "TRI WAHYUDI", "DWI PRASETYO",
)
JAVANESE_FEMALE = (
    "SRI", "SITI", "ENDANG", "WAHYUNI", "RAHAYU", "LESTARI", "SURYANI", "SULASTRI", "YULIANI", "RATNA",
    "DEWI", "AYU", "INDAH", "PUJI", "RETNO", "SARI", "WULAN", "FITRI", "RINA", "NANIK", "SUMIATI",
    "SUHARTI", "WIWIK", "ANI", "LINA", "NOVI", "TUTIK", "KURNIASIH", "SITI AMINAH", "NUR AINI",
    "ERNA", "DIAH", "YULI", "MARYATI", "TITIK", "UMI", "ANISA", "DWI ASTUTI", "TRI WAHYUNI",
)
JAVANESE_SECOND_MALE = (
    "SANTOSO", "WIBOWO", "PRASETYO", "NUGROHO", "SETIAWAN", "HIDAYAT", "SUSANTO", "KURNIAWAN",
    "SAPUTRO", "PURNOMO", "HARTONO", "UTOMO", "WAHYUDI", "FIRMANSYAH", "SUSILO", "RAHARJO",
    "SUBEKTI", "PAMUNGKAS", "SULISTYO", "PRABOWO", "GUNAWAN", "HERMAWAN",
)
JAVANESE_SECOND_FEMALE = (
    "LESTARI", "RAHAYU", "WULANDARI", "SUSANTI", "HANDAYANI", "PUSPITASARI", "KURNIAWATI", "SAFITRI",
    "UTAMI", "RAHMAWATI", "ANGGRAINI", "PURWANTI", "SETYANINGSIH", "NINGSIH", "MULYANI", "ASTUTI",
    "NINGRUM", "PERTIWI",
)
SUNDANESE_MALE = (
    "ASEP", "UJANG", "DADANG", "CECEP", "DEDEN", "YAYAN", "DEDE", "IWAN", "RUDI", "JAJANG", "ENTIS",
    "DEDI", "HENDRA", "RIZAL", "RIDWAN", "AGUS", "AHMAD", "ENDANG KOSASIH", "ADE", "ROHMAT", "OMAN",
    "ENCEP", "DADAN", "AEP", "YUDI", "WAHYU", "ILHAM", "FIKRI", "RAKA",
)
SUNDANESE_FEMALE = (
    "NENENG", "EUIS", "IIS", "YENI", "NINING", "SITI", "IMAS", "NURHAYATI", "ENUNG", "LILIS", "TETI",
    "RINA", "WULAN", "NIA", "DEWI", "TUTI", "YANTI", "POPON", "ELIS", "ENENG", "CUCU", "RISMA",
    "SALSABILA", "NURUL", "ANISA", "FITRIANI",
)
SUNDANESE_SECOND_MALE = (
    "SUNANDAR", "SURYANA", "HIDAYAT", "SUPRIATNA", "PERMANA", "KURNIAWAN", "RAHMAT", "SAEPUDIN",
    "HERMAWAN", "GUNAWAN", "FIRMANSYAH", "NUGRAHA", "RAMDANI", "SOPIAN", "MULYANA", "SETIAWAN",
    "KUSNADI", "SUHERMAN", "HERDIANA",
)
SUNDANESE_SECOND_FEMALE = (
    "NURHASANAH", "ROSMIATI", "KURNIASIH", "MARYANI", "ROHAETI", "HASANAH", "KOMALASARI",
    "SETIAWATI", "WULANDARI", "HERLINA", "RAHMAWATI", "NURJANAH", "SUMIATI", "SRIWAHYUNI",
)
MALAY_MALE = (
    "MUHAMMAD", "AHMAD", "RIZKI", "FADLI", "HENDRA", "ZULKIFLI", "SYAHRUL", "IRFAN", "FAUZAN",
    "YUSUF", "RIDHO", "ARIF", "DONI", "ROMI", "AFRIZAL", "ZULFIKAR", "HAFIZ", "ILHAM", "RAHMAD",
    "TAUFIK", "HERU", "YOGI", "REZA", "FIRDAUS", "SYAIFUL", "ANDRI",
)
MALAY_FEMALE = (
    "NURUL", "SITI", "PUTRI", "RAHMA", "FITRI", "AISYAH", "YULIA", "RANI", "DEWI", "NADIA", "INDAH",
    "ANNISA", "MAYA", "ZAHRA", "SRI", "YUSNIDAR", "NURHALIZA", "ELFIRA", "RATNA", "DESI", "MUTIA",
    "SELVI", "WINDA", "FADHILA",
)
MALAY_SECOND_MALE = (
    "SAPUTRA", "PUTRA", "SYAHPUTRA", "PRATAMA", "HIDAYAT", "RAMADHAN", "FIRMANSYAH", "KURNIAWAN",
    "RAHMAN", "FAUZI", "EFENDI", "HASIBUAN", "NASRUL", "AZHAR", "ALFARIZI",
)
MALAY_SECOND_FEMALE = (
    "PUTRI", "SARI", "RAHMADANI", "LESTARI", "WULANDARI", "AMELIA", "PERMATASARI", "SAFITRI",
    "OKTAVIANI", "MAHARANI", "HANDAYANI", "YANTI", "FEBRIANTI", "NOVITA",
)
BUGIS_MALE = (
    "MUHAMMAD", "ABDUL", "SYAMSUL", "AHMAD", "RAHMAT", "IRWAN", "HASANUDDIN", "AMIRUDDIN",
    "SYAHRIR", "BASO", "BAHARUDDIN", "ARDIANSYAH", "MUSTAFA", "ASRUL", "NASRUN", "SUDIRMAN",
)
BUGIS_FEMALE = (
    "NURUL", "SITTI", "HASNAH", "NURHAYATI", "ROSMINI", "HASRIANI", "FITRIANI", "DARMAWATI",
    "NURLELA", "SURIANI", "MARLINA", "HASMAWATI", "JUMRIANI", "NURHIDAYAH",
)
BUGIS_SECOND_MALE = (
    "SYAMSUDDIN", "RAHMAN", "HAMID", "LATIF", "SALEH", "HASAN", "AMIR", "ISMAIL", "JUFRI", "KADIR",
    "MAKMUR", "RASYID", "NASIR",
)
BUGIS_SECOND_FEMALE = ("RAMADHANI", "SARI", "RAHMAWATI", "NURDIN", "ANGRAENI", "MUSDALIFAH", "SYAHRIR")
CHRISTIAN_MALE = (
    "YOHANES", "FRANSISKUS", "YOSEF", "PETRUS", "PAULUS", "MARKUS", "STEFANUS", "AGUSTINUS",
    "YAKOBUS", "THOMAS", "KRISTIAN", "DANIEL", "MARTHEN", "YULIUS", "BENEDIKTUS", "ROBERT", "HOTMAN",
    "PARULIAN", "SAHAT", "BINSAR", "TIGOR", "HENDRIK", "JONATHAN", "SAMUEL", "RONALD", "FERNANDO",
    "ANDREAS", "FREDY", "ALFONS", "YERMIAS", "OKTOVIANUS", "NATANAEL", "YONATAN",
)
CHRISTIAN_FEMALE = (
    "MARIA", "YOHANA", "THERESIA", "AGUSTINA", "FRANSISKA", "KATARINA", "ELISABETH", "MARTHA",
    "YULIANA", "VERONIKA", "MARGARETHA", "REGINA", "ANGELA", "FLORENSIA", "ROSMAWATI", "TIURMA",
    "RUGUN", "LUSIANA", "RUTH", "DEBORA", "SARAH", "NOVITA", "KRISTINA", "MERLIN", "YOSEFINA",
    "FEBRIANA", "SELFINA", "OKTAVIA",
)
CHINESE_MALE = (
    "HENDRA", "SUTANTO", "KEVIN", "STEVEN", "RICKY", "WILSON", "JIMMY", "SUGIANTO", "HERMANTO",
    "JOHAN", "FELIX", "WILLIAM", "ALBERT", "VINCENT", "GUNAWAN", "SURYADI", "ERIC",
)
CHINESE_FEMALE = (
    "LINA", "MEI", "LILY", "SUSANTI", "YENNY", "VIVIAN", "CINDY", "JESSICA", "LINDA", "MEILIANA",
    "FENNY", "ANGELINE", "CYNTHIA", "SHERLY", "MELINDA", "IRENE",
)
CHINESE_SURNAMES = (
    "WIJAYA", "TANOTO", "HALIM", "SANTOSO", "KURNIAWAN", "TANUWIJAYA", "SALIM", "LIM", "TAN", "LIEM",
    "SETIADI", "HARTANTO", "SUSILO", "CHANDRA", "LIE", "GUNADI", "SUGIHARTO", "TJANDRA",
)
# Balinese names: I (men) / NI (women) + a birth-order name + given names.
BALINESE_ORDER_MALE = (
    ("WAYAN", "PUTU", "GEDE"), ("MADE", "KADEK", "NENGAH"), ("NYOMAN", "KOMANG"), ("KETUT",),
)
BALINESE_ORDER_FEMALE = (("LUH", "PUTU", "WAYAN"), ("MADE", "KADEK"), ("NYOMAN", "KOMANG"), ("KETUT",))
BALINESE_BIRTH_ORDER_SHARES = (0.40, 0.28, 0.17, 0.15)
BALINESE_GIVEN_MALE = (
    "AGUS", "BAGUS", "EKA", "DHARMA", "SURYA", "ARDANA", "SUDARMA", "WIRAWAN", "SUARDANA", "ARTAWAN",
    "SUKADANA", "ADI PUTRA", "WIDIANA", "SUPARTA", "MERTA", "ARYA", "DWIPAYANA",
)
BALINESE_GIVEN_FEMALE = (
    "AYU", "SRI", "PUTRI", "SUARTINI", "SUKERTI", "ARIANI", "DEWI", "KARTIKA", "ASTITI", "MURNIATI",
    "SURYANI", "WIDIASTUTI", "SUCIPTA DEWI", "RATNA", "PARWATI",
)
# Family names (marga, fam) shared by household members, by region.
BATAK_CHRISTIAN_SURNAMES = (
    "SIREGAR", "SIMANJUNTAK", "SINAGA", "SITUMORANG", "PANJAITAN", "HUTAPEA", "SITOMPUL", "MANURUNG",
    "SILALAHI", "PARDEDE", "TAMBUNAN", "SIHOMBING", "SIMATUPANG", "HUTAGALUNG", "SIANTURI",
    "NAPITUPULU", "PASARIBU", "SITORUS", "MARPAUNG", "GULTOM", "SIMBOLON", "BUTAR-BUTAR", "GINTING",
    "TARIGAN", "SEMBIRING", "PURBA", "SARAGIH", "DAMANIK",
)
BATAK_MUSLIM_SURNAMES = (
    "NASUTION", "LUBIS", "HARAHAP", "SIREGAR", "HASIBUAN", "DAULAY", "PULUNGAN", "RANGKUTI",
    "BATUBARA", "MATONDANG", "RITONGA", "TANJUNG",
)
TIMORESE_SURNAMES = (
    "NDUN", "BRIA", "NAHAK", "SERAN", "MANEK", "TEFA", "KASE", "LAKE", "PAH", "MAU", "LAKA", "RATU",
    "BERE", "NOPE", "TAEK", "KOLO", "FALLO", "LAY", "HUREK", "MAKING", "BANI", "NENOBAIS",
)
PAPUAN_SURNAMES = (
    "WENDA", "TABUNI", "KOGOYA", "WONDA", "YIKWA", "MOTE", "RUMBIAK", "KAMBU", "KARETH", "WANIMBO",
    "GOBAI", "PIGAI", "KAROBA", "RUMAROPEN", "WANGGAI", "MANDOWEN", "YOMAN", "MURIB", "KOSAY",
)
MINAHASA_SURNAMES = (
    "WOWOR", "TUMBELAKA", "RONDONUWU", "LUMENTUT", "SONDAKH", "PANGEMANAN", "MANDAGI", "RUMENGAN",
    "WUISAN", "KAUNANG", "TAMBUWUN", "ROMPAS", "LENGKONG", "SUPIT", "KALALO", "TUMEWU", "KALIGIS",
    "PELEALU",
)
AMBONESE_SURNAMES = (
    "LATUHERU", "PATTINASARANY", "TUHUMURY", "MATULESSY", "LEATEMIA", "PATTIASINA", "SIAHAYA",
    "TANAMAL", "LEWERISSA", "SAHETAPY", "NANLOHY", "TUPAMAHU",
)
DAYAK_SURNAMES = ("AJI", "DJAU", "LAWING", "HANG", "ANYIE", "BALANG", "UBING", "LIAH", "TINGANG", "ALUH")
# fmt: on

GENERIC_MALE = tuple(n.upper() for n in _FakerIdPerson.first_names_male)
GENERIC_FEMALE = tuple(
    n.upper() for n in _FakerIdPerson.first_names_female if n not in _FakerIdPerson.first_names_male
)
GENERIC_SECOND_MALE = tuple(n.upper() for n in _FakerIdPerson.last_names_male)
GENERIC_SECOND_FEMALE = tuple(n.upper() for n in _FakerIdPerson.last_names_female)

# --- styles -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NameStyle:
    """How one community composes a full name."""

    name: str
    male: tuple[str, ...]
    female: tuple[str, ...]
    second_male: tuple[str, ...] = ()
    second_female: tuple[str, ...] = ()
    family: tuple[str, ...] = ()  # a family name shared by the household
    single_share: float = 0.0  # people known by one name only
    second_share: float = 0.7  # people with a second given name (when not single)
    prefix_male: str = ""  # "ANDI" for some Bugis nobility
    prefix_share: float = 0.0


STYLES: dict[str, NameStyle] = {
    s.name: s
    for s in (
        NameStyle(
            "javanese",
            JAVANESE_MALE,
            JAVANESE_FEMALE,
            JAVANESE_SECOND_MALE,
            JAVANESE_SECOND_FEMALE,
            single_share=0.40,
        ),
        NameStyle(
            "sundanese",
            SUNDANESE_MALE,
            SUNDANESE_FEMALE,
            SUNDANESE_SECOND_MALE,
            SUNDANESE_SECOND_FEMALE,
            single_share=0.15,
        ),
        NameStyle(
            "malay", MALAY_MALE, MALAY_FEMALE, MALAY_SECOND_MALE, MALAY_SECOND_FEMALE, single_share=0.08
        ),
        NameStyle(
            "bugis",
            BUGIS_MALE,
            BUGIS_FEMALE,
            BUGIS_SECOND_MALE,
            BUGIS_SECOND_FEMALE,
            single_share=0.10,
            prefix_male="ANDI",
            prefix_share=0.08,
        ),
        NameStyle(
            "generic",
            GENERIC_MALE,
            GENERIC_FEMALE,
            GENERIC_SECOND_MALE,
            GENERIC_SECOND_FEMALE,
            single_share=0.10,
        ),
        NameStyle(
            "batak_christian",
            CHRISTIAN_MALE,
            CHRISTIAN_FEMALE,
            family=BATAK_CHRISTIAN_SURNAMES,
            second_share=0.0,
        ),
        NameStyle("batak_muslim", MALAY_MALE, MALAY_FEMALE, family=BATAK_MUSLIM_SURNAMES, second_share=0.0),
        NameStyle("timorese", CHRISTIAN_MALE, CHRISTIAN_FEMALE, family=TIMORESE_SURNAMES, second_share=0.2),
        NameStyle("papuan", CHRISTIAN_MALE, CHRISTIAN_FEMALE, family=PAPUAN_SURNAMES, second_share=0.1),
        NameStyle("minahasa", CHRISTIAN_MALE, CHRISTIAN_FEMALE, family=MINAHASA_SURNAMES, second_share=0.2),
        NameStyle("ambonese", CHRISTIAN_MALE, CHRISTIAN_FEMALE, family=AMBONESE_SURNAMES, second_share=0.1),
        NameStyle("dayak", CHRISTIAN_MALE, CHRISTIAN_FEMALE, family=DAYAK_SURNAMES, second_share=0.2),
        NameStyle("christian", CHRISTIAN_MALE, CHRISTIAN_FEMALE, GENERIC_SECOND_MALE, GENERIC_SECOND_FEMALE),
        NameStyle("chinese", CHINESE_MALE, CHINESE_FEMALE, family=CHINESE_SURNAMES, second_share=0.0),
        NameStyle(
            "balinese",
            BALINESE_GIVEN_MALE,
            BALINESE_GIVEN_FEMALE,
            BALINESE_GIVEN_MALE,
            BALINESE_GIVEN_FEMALE,
            second_share=0.35,
        ),
    )
}
STYLE_NAMES: tuple[str, ...] = tuple(STYLES)

# Which style a Muslim (or, by the second map, a Christian) household of a province uses.
_MUSLIM_STYLE_BY_PROVINCE = {
    "33": "javanese",
    "34": "javanese",
    "35": "javanese",
    "32": "sundanese",
    "36": "sundanese",
    "18": "javanese",
    "73": "bugis",
    "76": "bugis",
    "74": "bugis",
    "31": "generic",
    "11": "malay",
    "13": "malay",
    "14": "malay",
    "15": "malay",
    "16": "malay",
    "17": "malay",
    "19": "malay",
    "21": "malay",
    "61": "malay",
    "63": "malay",
    "64": "malay",
    "65": "malay",
    "12": "batak_muslim",
}
_CHRISTIAN_STYLE_BY_PROVINCE = {
    "12": "batak_christian",
    "53": "timorese",
    "71": "minahasa",
    "81": "ambonese",
    "61": "dayak",
    "62": "dayak",
    "64": "dayak",
    "65": "dayak",
    "91": "papuan",
    "92": "papuan",
    "93": "papuan",
    "94": "papuan",
    "95": "papuan",
    "96": "papuan",
}
# Share of Muslim households of North Sumatra that carry a (Mandailing/Angkola) marga.
_SUMUT_MUSLIM_MARGA_SHARE = 0.35


@functools.cache
def _pool() -> tuple[pa.Array, dict[str, int], np.ndarray]:
    words: dict[str, int] = {"": 0}
    for style in STYLES.values():
        for table in (
            style.male,
            style.female,
            style.second_male,
            style.second_female,
            style.family,
            (style.prefix_male,) if style.prefix_male else (),
        ):
            for word in table:
                words.setdefault(word, len(words))
    for order in BALINESE_ORDER_MALE + BALINESE_ORDER_FEMALE:
        for word in order:
            words.setdefault(word, len(words))
    for word in ("I", "NI"):
        words.setdefault(word, len(words))
    names = list(words)
    # The lowercase, letters-only form each word takes in an email address.
    email_forms = np.array(["".join(ch for ch in w.lower() if ch.isalpha()) for w in names], dtype=object)
    return pa.array(names, type=pa.string()), words, email_forms


@functools.cache
def _indices(table: tuple[str, ...]) -> np.ndarray:
    return np.array([_pool()[1][w] for w in table], dtype=np.int64)


def name_style_for(province_code: str, religion: str) -> str:
    """The naming style of a household, from where it lives and its religion."""
    if religion == "HINDU":
        return "balinese"
    if religion in ("BUDDHA", "KONGHUCU"):
        return "chinese"
    if religion in ("KRISTEN", "KATOLIK"):
        return _CHRISTIAN_STYLE_BY_PROVINCE.get(province_code, "christian")
    return _MUSLIM_STYLE_BY_PROVINCE.get(province_code, "generic")


@functools.cache
def style_table(province_codes: tuple[str, ...], religions: tuple[str, ...]) -> np.ndarray:
    """Style index for every (province index, religion index) pair."""
    return np.array([[STYLE_NAMES.index(name_style_for(p, r)) for r in religions] for p in province_codes])


@dataclass
class NameColumns:
    full_name: pa.Array  # upper case, as on the KTP
    given_word: np.ndarray  # pool index of the first given name (for emails and passwords)
    family_word: np.ndarray  # pool index of the family or second name, 0 if none
    pool: pa.Array
    email_forms: np.ndarray


def _pick(rng: np.random.Generator, table: tuple[str, ...], n: int) -> np.ndarray:
    idx = _indices(table)
    return idx[rng.integers(0, len(idx), n)]


def draw_names(
    rng: np.random.Generator,
    style: np.ndarray,
    female: np.ndarray,
    household: np.ndarray,
    province_codes: np.ndarray,
) -> NameColumns:
    """Full names for people of the given style index, gender and household (shared family names)."""
    n = len(style)
    pool, words, email_forms = _pool()
    prefix = np.full(n, -1, dtype=np.int64)
    order = np.full(n, -1, dtype=np.int64)
    given = np.zeros(n, dtype=np.int64)
    second = np.full(n, -1, dtype=np.int64)
    family = np.full(n, -1, dtype=np.int64)
    # A household's family name: drawn once per household, shared by its members.
    n_households = int(household.max()) + 1 if n else 0
    for s, spec in enumerate(STYLES.values()):
        rows = np.flatnonzero(style == s)
        if rows.size == 0:
            continue
        fem = female[rows]
        g = np.where(fem, _pick(rng, spec.female, rows.size), _pick(rng, spec.male, rows.size))
        given[rows] = g
        if spec.family:
            per_household = _pick(rng, spec.family, n_households)
            fam = per_household[household[rows]]
            if spec.name == "batak_muslim":  # many Muslims of North Sumatra are Malay or Javanese
                no_marga = rng.random(rows.size) >= _SUMUT_MUSLIM_MARGA_SHARE
                fam = np.where(no_marga, -1, fam)
                extra = np.where(
                    fem, _pick(rng, MALAY_SECOND_FEMALE, rows.size), _pick(rng, MALAY_SECOND_MALE, rows.size)
                )
                second[rows] = np.where(no_marga & (rng.random(rows.size) < 0.7), extra, -1)
            family[rows] = fam
        if spec.second_male:
            single = rng.random(rows.size) < spec.single_share
            has_second = ~single & (
                rng.random(rows.size) < max(spec.second_share, 0.0) / max(1.0 - spec.single_share, 1e-9)
            )
            sec = np.where(
                fem, _pick(rng, spec.second_female, rows.size), _pick(rng, spec.second_male, rows.size)
            )
            sec = np.where(sec == g, -1, sec)  # "BUDI BUDI" is not a name
            second[rows] = np.where(has_second, sec, second[rows])
        if spec.name == "balinese":
            prefix[rows] = np.where(fem, words["NI"], words["I"])
            birth_order = np.searchsorted(
                np.cumsum(BALINESE_BIRTH_ORDER_SHARES), rng.random(rows.size), side="right"
            ).clip(0, 3)
            variant = rng.integers(0, 3, rows.size)
            table_m = [[words[w] for w in o] for o in BALINESE_ORDER_MALE]
            table_f = [[words[w] for w in o] for o in BALINESE_ORDER_FEMALE]
            flat_m = np.array([o[v % len(o)] for o in table_m for v in range(3)]).reshape(4, 3)
            flat_f = np.array([o[v % len(o)] for o in table_f for v in range(3)]).reshape(4, 3)
            order[rows] = np.where(fem, flat_f[birth_order, variant], flat_m[birth_order, variant])
        if spec.prefix_male:
            noble = ~fem & (rng.random(rows.size) < spec.prefix_share)
            prefix[rows] = np.where(noble, words[spec.prefix_male], prefix[rows])
    full = join(
        [take(pool, prefix), take(pool, order), take(pool, given), take(pool, second), take(pool, family)],
        " ",
    )
    family_word = np.where(family >= 0, family, np.where(second >= 0, second, 0))
    return NameColumns(full, given, family_word, pool, email_forms)


def title_case(names: pa.Array) -> pa.Array:
    """ "BUDI SANTOSO" -> "Budi Santoso": how most people type their name into a form."""
    return pc.utf8_title(names)
