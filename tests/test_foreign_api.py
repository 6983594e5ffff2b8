"""The Pendaftaran API (tests/foreign_api): the other system the surge is pointed at with a profile.

Its own behaviour, over real HTTP against the uvicorn subprocess: form bodies, the CSRF token from
the HTML page and from the cookie, refusals inside 200 answers with its own codes, OTPs in its
database, the KTP upload, the wave quota, and the population rules (simulator/rules).
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3

import pytest
import requests
from foreign_api.app import CSRF_COOKIE, KODE
from foreign_api.runner import prepare_database, running_foreign

from simulator.api.testing import ktp_like_photo, make_resident
from simulator.rules.reasons import Reason

TOKEN_RE = re.compile(r'name="_token" value="([^"]+)"')
RESIDENTS = [
    make_resident(1),
    make_resident(2),
    make_resident(3, birth_date=dt.date(2005, 6, 1)),  # 15 on the reference date: under age
    make_resident(4, occupation="PELAJAR/MAHASISWA"),
    make_resident(5, is_recipient=True),
    make_resident(6),
    make_resident(7),
]


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    db = prepare_database(tmp_path_factory.mktemp("pendaftaran") / "p.db", residents=RESIDENTS, waves={3: 2})
    with running_foreign(db) as url:
        yield url


def otp(api, saluran: str, tujuan: str) -> str:
    with sqlite3.connect(f"file:{api.db}?mode=ro", uri=True) as conn:
        row = conn.execute(
            "SELECT kode FROM kode_otp WHERE saluran = ? AND tujuan = ? ORDER BY id DESC LIMIT 1",
            (saluran, tujuan),
        ).fetchone()
    return row[0]


def page(api) -> tuple[requests.Session, str]:
    s = requests.Session()
    r = s.get(api + "/daftar", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    return s, TOKEN_RE.search(r.text).group(1)


def signed_up(api, email: str, password: str = "rahasia123") -> tuple[requests.Session, str]:
    s, token = page(api)
    r = s.post(
        api + "/daftar",
        data={
            "nama": "Uji",
            "surel": email,
            "kata_sandi": password,
            "kata_sandi_ulang": password,
            "_token": token,
        },
        timeout=10,
    )
    body = r.json()
    assert r.status_code == 200 and body["status"] == "berhasil", body
    return s, body["id_akun"]


def logged_in(api, email: str, password: str = "rahasia123") -> requests.Session:
    s, akun = signed_up(api, email, password)
    token = s.cookies[CSRF_COOKIE]
    r = s.post(
        api + "/daftar/konfirmasi",
        data={"id_akun": akun, "kode": otp(api, "surel", email.lower()), "_token": token},
        timeout=10,
    )
    assert r.json()["status"] == "berhasil", r.text
    before = s.cookies["SESI"]
    r = s.post(api + "/masuk", data={"surel": email, "kata_sandi": password, "_token": token}, timeout=10)
    assert r.json()["status"] == "berhasil", r.text
    assert s.cookies["SESI"] != before  # the session is rotated at log-in
    s.headers["X-XSRF-TOKEN"] = s.cookies[CSRF_COOKIE]
    return s


def identity(s, api, resident, **override):
    data = {"nik": resident["nik"], "no_kk": resident["kk"], "tgl_lahir": str(resident["birth_date"])}
    data.update(override)
    return s.post(api + "/akun/identitas", data=data, timeout=30).json()


def test_sign_up_needs_the_csrf_token_from_the_page(api):
    s, token = page(api)
    form = {
        "nama": "A",
        "surel": "csrf@contoh.id",
        "kata_sandi": "rahasia123",
        "kata_sandi_ulang": "rahasia123",
    }
    r = s.post(api + "/daftar", data=form, timeout=10)
    assert r.status_code == 403 and r.json()["kode"] == "TOKEN_CSRF_TIDAK_SAH"
    r = s.post(api + "/daftar", data={**form, "_token": "palsu"}, timeout=10)
    assert r.status_code == 403
    r = requests.post(api + "/daftar", data={**form, "_token": token}, timeout=10)  # no session cookie
    assert r.status_code == 401 and r.json()["kode"] == "SESI_TIDAK_ADA"
    r = s.post(api + "/daftar", json={**form, "_token": token}, timeout=10)  # JSON is not a form
    assert r.status_code == 415
    r = s.post(api + "/daftar", data={**form, "_token": token}, timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "berhasil"


def test_refusals_come_inside_200_answers_with_its_own_codes(api):
    signed_up(api, "dua@contoh.id")
    s, token = page(api)
    cases = {
        "EMAIL_SUDAH_TERDAFTAR": {"surel": "DUA@contoh.id"},
        "SUREL_TIDAK_SAH": {"surel": "bukan-surel"},
        "DOMAIN_SUREL_SALAH_KETIK": {"surel": "x@gmial.com"},
        "SANDI_TERLALU_PENDEK": {"kata_sandi": "123", "kata_sandi_ulang": "123"},
        "SANDI_TIDAK_SAMA": {"kata_sandi_ulang": "lain12345"},
    }
    for kode, change in cases.items():
        form = {
            "nama": "B",
            "surel": "baru@contoh.id",
            "kata_sandi": "rahasia123",
            "kata_sandi_ulang": "rahasia123",
            "_token": token,
            **change,
        }
        r = s.post(api + "/daftar", data=form, timeout=10)
        assert r.status_code == 200 and r.json() == {
            "status": "gagal",
            "kode": kode,
            "pesan": r.json()["pesan"],
        }
    with sqlite3.connect(api.db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM akun WHERE surel = 'baru@contoh.id'").fetchone()[0] == 0


def test_log_in_needs_a_confirmed_email_and_the_right_password(api):
    s, akun = signed_up(api, "tiga@contoh.id")
    token = s.cookies[CSRF_COOKIE]
    r = s.post(api + "/masuk", data={"surel": "tiga@contoh.id", "kata_sandi": "rahasia123", "_token": token})
    assert r.json()["kode"] == "SUREL_BELUM_DIKONFIRMASI"
    r = s.post(api + "/daftar/konfirmasi", data={"id_akun": akun, "kode": "000000x", "_token": token})
    assert r.json()["kode"] == "KODE_SALAH"
    r = s.post(
        api + "/daftar/konfirmasi",
        data={"id_akun": akun, "kode": otp(api, "surel", "tiga@contoh.id"), "_token": token},
    )
    assert r.json()["status"] == "berhasil"
    r = s.post(api + "/masuk", data={"surel": "tiga@contoh.id", "kata_sandi": "salah-sandi", "_token": token})
    assert r.json()["kode"] == "SUREL_ATAU_SANDI_SALAH"
    # Logged-in steps take the token from the XSRF-TOKEN cookie in a header; without it, 403.
    s = logged_in(api, "empat@contoh.id")
    header = s.headers.pop("X-XSRF-TOKEN")
    r = s.post(api + "/akun/profil", data={"alamat": "x"}, timeout=10)
    assert r.status_code == 403
    s.headers["X-XSRF-TOKEN"] = header
    r = requests.post(api + "/akun/profil", data={"alamat": "x"}, headers={"X-XSRF-TOKEN": header})
    assert r.status_code == 401


def test_identity_applies_the_registry_and_eligibility_rules(api):
    s = logged_in(api, "lima@contoh.id")
    r1, r2 = RESIDENTS[0], RESIDENTS[1]
    assert identity(s, api, r1, nik="12345")["kode"] == KODE[Reason.NIK_MALFORMED]
    assert identity(s, api, make_resident(99))["kode"] == KODE[Reason.NIK_NOT_FOUND]
    assert identity(s, api, r1, no_kk=r2["kk"])["kode"] == KODE[Reason.NIK_KK_MISMATCH]
    assert identity(s, api, r1, tgl_lahir="1970-01-01")["kode"] == KODE[Reason.NIK_BIRTHDATE_MISMATCH]
    assert identity(s, api, RESIDENTS[2])["kode"] == KODE[Reason.UNDERAGE]
    assert identity(s, api, RESIDENTS[3])["kode"] == KODE[Reason.STILL_STUDENT]
    assert identity(s, api, RESIDENTS[4])["kode"] == KODE[Reason.ALREADY_RECIPIENT]
    assert identity(s, api, r1)["status"] == "berhasil"
    other = logged_in(api, "enam@contoh.id")
    assert identity(other, api, r1)["kode"] == KODE[Reason.NIK_ALREADY_REGISTERED]


def walk_to_join(api, email: str, resident: dict, phone: str) -> requests.Session:
    s = logged_in(api, email)
    assert identity(s, api, resident)["status"] == "berhasil"
    r = s.post(
        api + "/akun/profil",
        data={
            "alamat": "Jl. Uji 1",
            "kode_pos": "40111",
            "pendidikan": "SMA/SMK",
            "status_kerja": "BELUM BEKERJA",
        },
    )
    assert r.json()["status"] == "berhasil", r.text
    r = s.post(api + "/akun/ktp", files={"foto_ktp": ("ktp.jpg", b"", "image/jpeg")})
    assert r.status_code == 200 and r.json()["kode"] == KODE[Reason.FILE_EMPTY]
    r = s.post(api + "/akun/ktp", files={"foto_ktp": ("ktp.jpg", ktp_like_photo(), "image/jpeg")})
    assert r.json()["status"] == "berhasil", r.text
    assert s.post(api + "/akun/hp", data={"no_hp": "12"}).json()["kode"] == KODE[Reason.PHONE_INVALID]
    assert s.post(api + "/akun/hp", data={"no_hp": phone}).json()["status"] == "berhasil"
    r = s.post(api + "/akun/hp/konfirmasi", data={"kode": otp(api, "sms", phone)})
    assert r.json()["status"] == "berhasil", r.text
    assert s.post(api + "/akun/tes", data={"jawaban": "ABC"}).json()["kode"] == "ISIAN_KURANG"
    r = s.post(api + "/akun/tes", data={"jawaban": list("ABCD" * 4 + "AB")})  # the field once per question
    assert r.json()["status"] == "berhasil", r.text
    return s


def test_the_whole_journey_and_the_wave_quota(api):
    with sqlite3.connect(api.db) as conn:
        uploads_before = conn.execute("SELECT COUNT(*) FROM unggahan_ktp").fetchone()[0]
    first = walk_to_join(api, "tujuh@contoh.id", RESIDENTS[5], "081234567801")
    taken = logged_in(api, "delapan@contoh.id")
    assert identity(taken, api, RESIDENTS[6])["status"] == "berhasil"
    assert (
        taken.post(api + "/akun/hp", data={"no_hp": "+6281234567801"}).json()["kode"]
        == KODE[Reason.PHONE_TAKEN]
    )
    assert taken.post(api + "/gelombang/3/gabung", data={}).json()["kode"] == "LANGKAH_BELUM_SELESAI"
    r = first.post(api + "/gelombang/3/gabung", data={})
    assert r.json() == {"status": "berhasil", "gelombang": 3, "urutan": 1}
    assert first.post(api + "/gelombang/3/gabung", data={}).json()["kode"] == KODE[Reason.ALREADY_JOINED]
    assert first.post(api + "/gelombang/9/gabung", data={}).json()["kode"] == KODE[Reason.WAVE_NOT_OPEN]
    with sqlite3.connect(api.db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM unggahan_ktp").fetchone()[0] == uploads_before + 2
        assert conn.execute("SELECT COUNT(*) FROM peserta_gelombang WHERE gelombang = 3").fetchone()[0] == 1
    other = logged_in(api, "sepuluh@contoh.id")
    r = other.post(api + "/gelombang/3/gabung")  # a bare POST, no body: still checked for its token
    assert r.json()["kode"] == "LANGKAH_BELUM_SELESAI"
    r = requests.post(api + "/gelombang/3/gabung", cookies=other.cookies)
    assert r.status_code == 403


def test_a_full_wave_refuses_with_kuota_penuh(tmp_path):
    resident = make_resident(11)
    db = prepare_database(tmp_path / "q.db", residents=[resident, make_resident(12)], waves={5: 1})
    with running_foreign(db) as api:
        first = walk_to_join(api, "a@contoh.id", resident, "081234567811")
        second = walk_to_join(api, "b@contoh.id", make_resident(12), "081234567812")
        assert first.post(api + "/gelombang/5/gabung", data={}).json()["status"] == "berhasil"
        assert second.post(api + "/gelombang/5/gabung", data={}).json()["kode"] == KODE[Reason.WAVE_FULL]
        r = requests.post(api + "/admin/gelombang", json={"nomor": 6, "kuota": 4}, timeout=10)
        assert r.status_code == 201
        assert second.post(api + "/gelombang/6/gabung", data={}).json()["status"] == "berhasil"
