"""The population's published shapes (each cited) and stated assumptions: ages, sex, households,
religion, marital status, blood type, occupations, education, employment, where applicants drop out.
"""

from __future__ import annotations

NOT_FOUND_SERIAL = 9000  # serials 9000-9999 are never issued: a typed NIK there is absent
# Age of Kartu Prakerja recipients, West Java, waves 1-22 (docs/domain.md): 18-25 34%, 26-35 39%,
# 36-45 15%, 46-55 8%, over 55 4% (capped at 64, the program's working-age population).
AGE_BRACKETS: tuple[tuple[int, int, float], ...] = (
    (18, 25, 0.34),
    (26, 35, 0.39),
    (36, 45, 0.15),
    (46, 55, 0.08),
    (56, 64, 0.04),
)
FEMALE_SHARE = 0.47  # 47% of registrants were women (okezone, 3 Nov 2020)
# Adults (18-64) per family card. Assumption shaped on BPS's average household of ~3.9 people,
# about 2.4 of them of working age.
KK_ADULTS: dict[int, float] = {1: 0.22, 2: 0.40, 3: 0.22, 4: 0.11, 5: 0.05}
RELIGIONS = ("ISLAM", "KRISTEN", "KATOLIK", "HINDU", "BUDDHA", "KONGHUCU")
# Religion shares by province, BPS SP2010 (Kewarganegaraan, Suku Bangsa, Agama), rounded;
# provinces not listed follow the national shape of Muslim-majority provinces.
RELIGION_DEFAULT = (0.965, 0.015, 0.007, 0.004, 0.008, 0.001)
RELIGION_BY_PROVINCE: dict[str, tuple[float, ...]] = {
    "12": (0.664, 0.270, 0.040, 0.001, 0.024, 0.001),
    "31": (0.834, 0.087, 0.040, 0.002, 0.036, 0.001),
    "51": (0.132, 0.015, 0.009, 0.836, 0.007, 0.001),
    "53": (0.091, 0.348, 0.536, 0.002, 0.001, 0.022),
    "61": (0.595, 0.115, 0.225, 0.002, 0.060, 0.003),
    "62": (0.741, 0.160, 0.032, 0.065, 0.001, 0.001),
    "71": (0.306, 0.636, 0.044, 0.006, 0.002, 0.006),
    "72": (0.771, 0.169, 0.010, 0.040, 0.005, 0.005),
    "81": (0.506, 0.414, 0.072, 0.002, 0.001, 0.005),
    "21": (0.778, 0.121, 0.030, 0.001, 0.067, 0.003),
    "19": (0.896, 0.016, 0.015, 0.001, 0.063, 0.009),
    "82": (0.745, 0.248, 0.004, 0.001, 0.001, 0.001),
    "91": (0.159, 0.653, 0.180, 0.001, 0.001, 0.006),
    "92": (0.384, 0.538, 0.074, 0.002, 0.001, 0.001),
    "93": (0.159, 0.653, 0.180, 0.001, 0.001, 0.006),
    "94": (0.159, 0.653, 0.180, 0.001, 0.001, 0.006),
    "95": (0.060, 0.750, 0.185, 0.001, 0.001, 0.003),
    "96": (0.384, 0.538, 0.074, 0.002, 0.001, 0.001),
    "64": (0.855, 0.098, 0.037, 0.002, 0.007, 0.001),
    "65": (0.705, 0.225, 0.064, 0.001, 0.004, 0.001),
    "52": (0.962, 0.003, 0.002, 0.030, 0.002, 0.001),
    "18": (0.951, 0.015, 0.010, 0.017, 0.006, 0.001),
}
MARITAL = ("BELUM KAWIN", "KAWIN", "CERAI HIDUP", "CERAI MATI")
MARITAL_BY_AGE: tuple[tuple[int, tuple[float, ...]], ...] = (  # (up to age, shares): assumption
    (24, (0.78, 0.21, 0.009, 0.001)),
    (34, (0.32, 0.64, 0.03, 0.01)),
    (200, (0.07, 0.84, 0.05, 0.04)),
)
BLOOD_TYPES = ("O", "A", "B", "AB", "-")
BLOOD_SHARES = (0.24, 0.17, 0.19, 0.05, 0.35)  # O 37%, A 26%, B 29%, AB 8% of the known; "-" unknown
# Occupation as written on the KTP (Permendagri list); eligible values only. 88% of registrants
# were not working (docs/domain.md), though a KTP often still shows an old job.
OCCUPATIONS_MALE: dict[str, float] = {
    "BELUM/TIDAK BEKERJA": 0.40,
    "KARYAWAN SWASTA": 0.22,
    "WIRASWASTA": 0.14,
    "BURUH HARIAN LEPAS": 0.09,
    "PETANI/PEKEBUN": 0.05,
    "PEDAGANG": 0.03,
    "SOPIR": 0.02,
    "KARYAWAN HONORER": 0.015,
    "NELAYAN/PERIKANAN": 0.01,
    "TUKANG BATU": 0.01,
    "MEKANIK": 0.005,
    "KARYAWAN BUMN": 0.005,
    "GURU": 0.005,
}
OCCUPATIONS_FEMALE: dict[str, float] = {
    "BELUM/TIDAK BEKERJA": 0.33,
    "MENGURUS RUMAH TANGGA": 0.30,
    "KARYAWAN SWASTA": 0.17,
    "WIRASWASTA": 0.09,
    "PEDAGANG": 0.04,
    "BURUH HARIAN LEPAS": 0.03,
    "KARYAWAN HONORER": 0.02,
    "PETANI/PEKEBUN": 0.01,
    "GURU": 0.006,
    "PERAWAT": 0.004,
    "KARYAWAN BUMN": 0.004,
}
STUDENT = "PELAJAR/MAHASISWA"
EXCLUDED_DRAW: dict[str, float] = {  # how an excluded occupation is drawn for that defect
    "PEGAWAI NEGERI SIPIL (PNS)": 0.50,
    "TENTARA NASIONAL INDONESIA (TNI)": 0.10,
    "KEPOLISIAN RI (POLRI)": 0.10,
    "PERANGKAT DESA": 0.15,
    "KEPALA DESA": 0.04,
    "ANGGOTA DPRD KABUPATEN/KOTA": 0.04,
    "ANGGOTA DPRD PROVINSI": 0.01,
    "DIREKSI/KOMISARIS BUMN": 0.03,
    "DIREKSI/KOMISARIS BUMD": 0.03,
}
# Every occupation a KTP here can show, once: the occupation column indexes into it.
OCCUPATIONS: tuple[str, ...] = tuple(
    dict.fromkeys([*OCCUPATIONS_MALE, *OCCUPATIONS_FEMALE, STUDENT, *EXCLUDED_DRAW])
)
# 87% finished high school or more (docs/domain.md).
EDUCATION: dict[str, float] = {
    "SD": 0.04,
    "SMP": 0.09,
    "SMA/SMK": 0.60,
    "D1-D3": 0.07,
    "D4/S1": 0.19,
    "S2": 0.01,
}
# 88% not working (docs/domain.md); how the not-working split is an assumption.
EMPLOYMENT: dict[str, float] = {
    "TIDAK BEKERJA": 0.50,
    "KORBAN PHK": 0.24,
    "DIRUMAHKAN": 0.14,
    "BEKERJA": 0.07,
    "WIRAUSAHA": 0.05,
}
DROP_STEPS = ("email_verify", "identity", "phone_verify", "test", "join")
