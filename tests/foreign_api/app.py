"""Pendaftaran: a made-up registration API that speaks nothing of the reference contract.

Plain Starlette and the standard library's sqlite3 (no FastAPI, no SQLAlchemy, no JSON bodies):

- form-encoded bodies with Indonesian field names (nama, surel, kata_sandi, nik, no_kk, tgl_lahir,
  no_hp, ...), a multipart KTP upload (field ``foto_ktp``);
- cookie sessions (``SESI``) with a CSRF token: the sign-up page ``GET /daftar`` carries it in a
  hidden ``_token`` field; every POST must echo it, in ``_token`` or in an ``X-XSRF-TOKEN`` header
  (the ``XSRF-TOKEN`` cookie holds it); logging in rotates both the session and the token;
- refusals inside 200 answers: ``{"status": "gagal", "kode": "EMAIL_SUDAH_TERDAFTAR", "pesan": ...}``,
  successes ``{"status": "berhasil", ...}``; only protocol faults get 4xx (403 CSRF, 401 no session);
- one-time codes stored in table ``kode_otp`` (read by SQL, nothing is sent anywhere);
- the same rules as the reference API, from simulator/rules (NIK and KK, registry match,
  eligibility, KTP photos) and the reference's account and phone rules, so a population's defects
  give the refusals its ``expected_outcome`` predicts;
- a wave join with a quota (``gelombang`` / ``peserta_gelombang``), first come first served.

Configured by environment (runner.py sets it): PENDAFTARAN_DB (the SQLite file, made by
runner.prepare_database), PENDAFTARAN_ADMIN_KEY (for POST /admin/gelombang).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from simulator.api.app import PHONE_RE
from simulator.api.signup import EMAIL_RE
from simulator.rules.eligibility import REFERENCE_DATE, resident_eligibility
from simulator.rules.email import TYPO_DOMAIN_SET
from simulator.rules.nik import NikError, parse_kk, parse_nik
from simulator.rules.reasons import Reason
from simulator.rules.upload import validate_upload

SESSION_COOKIE = "SESI"
CSRF_COOKIE = "XSRF-TOKEN"
CSRF_HEADER = "x-xsrf-token"
CSRF_FIELD = "_token"
UPLOAD_FIELD = "foto_ktp"
TEST_QUESTIONS = 18

# Our reason codes for the project's Reason values (the profile maps them back).
KODE: dict[Reason, str] = {
    Reason.EMAIL_TAKEN: "EMAIL_SUDAH_TERDAFTAR",
    Reason.EMAIL_INVALID: "SUREL_TIDAK_SAH",
    Reason.EMAIL_DOMAIN_TYPO: "DOMAIN_SUREL_SALAH_KETIK",
    Reason.PASSWORD_TOO_SHORT: "SANDI_TERLALU_PENDEK",
    Reason.PASSWORD_MISMATCH: "SANDI_TIDAK_SAMA",
    Reason.NIK_MALFORMED: "NIK_TIDAK_SAH",
    Reason.NIK_NOT_FOUND: "NIK_TIDAK_DITEMUKAN",
    Reason.NIK_BIRTHDATE_MISMATCH: "TGL_LAHIR_TIDAK_COCOK",
    Reason.NIK_KK_MISMATCH: "KK_TIDAK_COCOK",
    Reason.NIK_ALREADY_REGISTERED: "NIK_SUDAH_TERDAFTAR",
    Reason.UNDERAGE: "BELUM_CUKUP_UMUR",
    Reason.STILL_STUDENT: "MASIH_PELAJAR",
    Reason.EXCLUDED_OCCUPATION: "PEKERJAAN_DIKECUALIKAN",
    Reason.ALREADY_RECIPIENT: "SUDAH_PENERIMA",
    Reason.RECEIVES_OTHER_AID: "MENERIMA_BANSOS_LAIN",
    Reason.KK_RECIPIENT_LIMIT: "BATAS_PENERIMA_KK",
    Reason.PHONE_INVALID: "NO_HP_TIDAK_SAH",
    Reason.PHONE_TAKEN: "NO_HP_SUDAH_TERDAFTAR",
    Reason.FILE_EMPTY: "BERKAS_KOSONG",
    Reason.FILE_TOO_LARGE: "BERKAS_TERLALU_BESAR",
    Reason.UNSUPPORTED_FORMAT: "FORMAT_TIDAK_DIDUKUNG",
    Reason.EXTENSION_MISMATCH: "EKSTENSI_TIDAK_COCOK",
    Reason.CORRUPT_IMAGE: "GAMBAR_RUSAK",
    Reason.IMAGE_DIMENSIONS: "UKURAN_GAMBAR_TIDAK_WAJAR",
    Reason.CARD_NOT_WHOLE: "KARTU_TERPOTONG",
    Reason.PHOTOCOPY: "FOTOKOPI",
    Reason.TOO_BLURRY: "FOTO_BURAM",
    Reason.NOT_A_KTP: "BUKAN_KTP",
    Reason.WAVE_FULL: "KUOTA_PENUH",
    Reason.ALREADY_JOINED: "SUDAH_BERGABUNG",
    Reason.WAVE_NOT_OPEN: "GELOMBANG_TIDAK_DIBUKA",
}
OTP_WRONG = "KODE_SALAH"
STEP_MISSING = "LANGKAH_BELUM_SELESAI"
BAD_LOGIN = "SUREL_ATAU_SANDI_SALAH"
FIELD_MISSING = "ISIAN_KURANG"
NOT_VERIFIED = "SUREL_BELUM_DIKONFIRMASI"

SCHEMA = """
CREATE TABLE IF NOT EXISTS penduduk (
    nik TEXT PRIMARY KEY, no_kk TEXT NOT NULL, tgl_lahir TEXT NOT NULL, pekerjaan TEXT NOT NULL,
    penerima INTEGER NOT NULL DEFAULT 0, bansos_lain INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS penduduk_kk ON penduduk (no_kk);
CREATE TABLE IF NOT EXISTS akun (
    id TEXT PRIMARY KEY, nama TEXT NOT NULL, surel TEXT NOT NULL UNIQUE, sandi TEXT NOT NULL,
    dibuat_pada REAL NOT NULL, surel_dikonfirmasi_pada REAL,
    nik TEXT UNIQUE, no_kk TEXT, tgl_lahir TEXT, identitas_pada REAL,
    alamat TEXT, kode_pos TEXT, pendidikan TEXT, status_kerja TEXT, profil_pada REAL,
    ktp_diterima_pada REAL, no_hp TEXT UNIQUE, hp_dikonfirmasi_pada REAL,
    skor_tes INTEGER, tes_pada REAL);
CREATE TABLE IF NOT EXISTS sesi (
    id TEXT PRIMARY KEY, akun_id TEXT, token TEXT NOT NULL, dibuat_pada REAL NOT NULL);
CREATE TABLE IF NOT EXISTS kode_otp (
    id INTEGER PRIMARY KEY AUTOINCREMENT, saluran TEXT NOT NULL CHECK (saluran IN ('surel', 'sms')),
    tujuan TEXT NOT NULL, kode TEXT NOT NULL, dibuat_pada REAL NOT NULL, dipakai INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS kode_otp_tujuan ON kode_otp (tujuan, saluran, id);
CREATE TABLE IF NOT EXISTS unggahan_ktp (
    id INTEGER PRIMARY KEY AUTOINCREMENT, akun_id TEXT NOT NULL, hasil TEXT NOT NULL,
    ukuran INTEGER NOT NULL, sha256 TEXT NOT NULL, dibuat_pada REAL NOT NULL);
CREATE TABLE IF NOT EXISTS gelombang (
    nomor INTEGER PRIMARY KEY, kuota INTEGER NOT NULL, mode TEXT NOT NULL DEFAULT 'fcfs',
    dibuka INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS peserta_gelombang (
    gelombang INTEGER NOT NULL, akun_id TEXT NOT NULL, dibuat_pada REAL NOT NULL,
    PRIMARY KEY (gelombang, akun_id));
"""


def connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn


def hash_sandi(sandi: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(8)
    digest = hashlib.pbkdf2_hmac("sha256", sandi.encode(), salt, 1000)
    return salt.hex() + "$" + digest.hex()


def sandi_cocok(stored: str, sandi: str) -> bool:
    salt, _, _ = stored.partition("$")
    return hmac.compare_digest(stored, hash_sandi(sandi, bytes.fromhex(salt)))


class Gagal(Exception):
    """A refusal, answered 200 with ``{"status": "gagal", "kode": ...}``."""

    def __init__(self, kode: str, pesan: str, keep: bool = False):
        super().__init__(pesan)
        self.kode, self.pesan = kode, pesan
        self.keep = keep  # commit what the step wrote before refusing (a refused upload is recorded)


@dataclass(frozen=True)
class Berkas:
    """An uploaded file, read."""

    data: bytes
    filename: str | None


def gagal(reason: Reason, pesan: str, keep: bool = False) -> Gagal:
    return Gagal(KODE[reason], pesan, keep)


def jawab(data: dict[str, Any] | None = None, *, status: int = 200) -> Response:
    body = {"status": "berhasil", **(data or {})}
    return Response(json.dumps(body), status_code=status, media_type="application/json")


def jawab_gagal(kode: str, pesan: str, status: int = 200) -> Response:
    body = {"status": "gagal", "kode": kode, "pesan": pesan}
    return Response(json.dumps(body), status_code=status, media_type="application/json")


PAGE = """<!doctype html>
<html lang="id"><head><meta charset="utf-8"><title>Daftar akun</title></head>
<body><h1>Daftar akun</h1>
<form method="post" action="/daftar">
<input type="hidden" name="_token" value="{token}">
<label>Nama <input name="nama"></label>
<label>Surel <input name="surel" type="email"></label>
<label>Kata sandi <input name="kata_sandi" type="password"></label>
<label>Ulangi kata sandi <input name="kata_sandi_ulang" type="password"></label>
<button>Daftar</button>
</form></body></html>
"""


class Pendaftaran:
    """The app's state: one SQLite connection (the event loop runs one handler at a time, and every
    handler's database work is synchronous, so each request's writes are one uninterrupted unit)."""

    def __init__(self, db_path: str, admin_key: str | None = None, reference_date: dt.date = REFERENCE_DATE):
        self.db = connect(db_path)
        self.db.executescript(SCHEMA)
        self.admin_key = admin_key
        self.reference_date = reference_date

    # -- sessions and CSRF ---------------------------------------------------------------------
    def new_session(self, akun_id: str | None) -> tuple[str, str]:
        sid, token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        self.db.execute(
            "INSERT INTO sesi (id, akun_id, token, dibuat_pada) VALUES (?, ?, ?, ?)",
            (sid, akun_id, token, time.time()),
        )
        return sid, token

    def session(self, request: Request) -> sqlite3.Row | None:
        sid = request.cookies.get(SESSION_COOKIE)
        if not sid:
            return None
        return self.db.execute("SELECT * FROM sesi WHERE id = ?", (sid,)).fetchone()

    @staticmethod
    def set_session(response: Response, sid: str, token: str) -> Response:
        response.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="lax", path="/")
        response.set_cookie(CSRF_COOKIE, token, samesite="lax", path="/")
        return response

    async def posted(self, request: Request, *, logged_in: bool) -> tuple[sqlite3.Row, Any] | Response:
        """The session and the form of a POST, or the protocol refusal (401 / 403 / 415)."""
        sesi = self.session(request)
        if sesi is None:
            return jawab_gagal("SESI_TIDAK_ADA", "buka halaman /daftar atau masuk dahulu", 401)
        if logged_in and sesi["akun_id"] is None:
            return jawab_gagal("BELUM_MASUK", "masuk dahulu", 401)
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        empty = not kind and request.headers.get("content-length", "0") == "0"  # a bare POST: no fields
        if not empty and kind not in ("application/x-www-form-urlencoded", "multipart/form-data"):
            return jawab_gagal("FORMAT_PERMINTAAN", "kirim formulir (application/x-www-form-urlencoded)", 415)
        form = await request.form(max_part_size=4 * 1024 * 1024)
        given = request.headers.get(CSRF_HEADER) or str(form.get(CSRF_FIELD) or "")
        if not given or not hmac.compare_digest(given, sesi["token"]):
            return jawab_gagal("TOKEN_CSRF_TIDAK_SAH", "token CSRF hilang atau salah", 403)
        return sesi, form

    def akun(self, akun_id: str) -> sqlite3.Row:
        return self.db.execute("SELECT * FROM akun WHERE id = ?", (akun_id,)).fetchone()

    def otp(self, saluran: str, tujuan: str) -> str:
        kode = f"{secrets.randbelow(10**6):06d}"
        self.db.execute(
            "INSERT INTO kode_otp (saluran, tujuan, kode, dibuat_pada) VALUES (?, ?, ?, ?)",
            (saluran, tujuan, kode, time.time()),
        )
        return kode

    def use_otp(self, saluran: str, tujuan: str, kode: str) -> bool:
        row = self.db.execute(
            "SELECT id, kode FROM kode_otp WHERE saluran = ? AND tujuan = ? AND dipakai = 0 "
            "ORDER BY id DESC LIMIT 1",
            (saluran, tujuan),
        ).fetchone()
        if row is None or not hmac.compare_digest(row["kode"], kode.strip()):
            return False
        self.db.execute("UPDATE kode_otp SET dipakai = 1 WHERE id = ?", (row["id"],))
        return True


def field(form: Any, name: str, max_len: int = 200) -> str:
    value = form.get(name)
    if not isinstance(value, str) or not value.strip():
        raise Gagal(FIELD_MISSING, f"isian {name} wajib diisi")
    if len(value) > max_len:
        raise Gagal(FIELD_MISSING, f"isian {name} terlalu panjang (paling banyak {max_len})")
    return value.strip()


def need(akun: sqlite3.Row, *columns: str) -> None:
    for column in columns:
        if akun[column] is None:
            raise Gagal(STEP_MISSING, f"langkah sebelumnya belum selesai ({column})")


def normal_hp(text: str) -> str | None:
    digits = "".join(ch for ch in text if ch not in " -()")
    if digits.startswith("+62"):
        digits = "0" + digits[3:]
    elif digits.startswith("62"):
        digits = "0" + digits[2:]
    return digits if PHONE_RE.match(digits) else None


def create_app(db_path: str | None = None, admin_key: str | None = None) -> Starlette:
    p = Pendaftaran(
        db_path or os.environ["PENDAFTARAN_DB"], admin_key or os.environ.get("PENDAFTARAN_ADMIN_KEY")
    )

    def handler(logged_in: bool | None):
        """Wrap a step: the POST checks (session, CSRF, form), then one transaction around the step's
        synchronous database work; a refusal is a 200 answer with the error inside."""

        def wrap(step):
            async def endpoint(request: Request) -> Response:
                if logged_in is None:
                    return step(request)
                checked = await p.posted(request, logged_in=logged_in)
                if isinstance(checked, Response):
                    return checked
                sesi, form = checked
                values: dict[str, Any] = {}
                for key, value in form.multi_items():  # read every file before the transaction
                    item = value if isinstance(value, str) else Berkas(await value.read(), value.filename)
                    if key in values:  # a repeated field (jawaban=A&jawaban=B...): its values in order
                        earlier = values[key]
                        values[key] = [*earlier, item] if isinstance(earlier, list) else [earlier, item]
                    else:
                        values[key] = item
                await form.close()
                p.db.execute("BEGIN IMMEDIATE")
                try:
                    response = step(request, sesi, values)
                except Gagal as refusal:
                    p.db.execute("COMMIT" if refusal.keep else "ROLLBACK")
                    return jawab_gagal(refusal.kode, refusal.pesan)
                except BaseException:
                    p.db.execute("ROLLBACK")
                    raise
                p.db.execute("COMMIT")
                return response

            return endpoint

        return wrap

    async def sehat(request: Request) -> Response:
        return Response(json.dumps({"status": "ok"}), media_type="application/json")

    @handler(None)
    def halaman_daftar(request: Request) -> Response:
        sesi = p.session(request)
        if sesi is None:
            sid, token = p.new_session(None)
        else:
            sid, token = sesi["id"], sesi["token"]
        return p.set_session(HTMLResponse(PAGE.format(token=token)), sid, token)

    @handler(False)
    def daftar(request: Request, sesi: sqlite3.Row, form: Any) -> Response:
        nama = field(form, "nama")
        surel = field(form, "surel", 254).lower()
        sandi = form.get("kata_sandi") or ""
        ulang = form.get("kata_sandi_ulang")
        if not EMAIL_RE.match(surel):
            raise gagal(Reason.EMAIL_INVALID, f"{surel!r} bukan alamat surel")
        if surel.rpartition("@")[2] in TYPO_DOMAIN_SET:
            raise gagal(Reason.EMAIL_DOMAIN_TYPO, "domain surel sepertinya salah ketik")
        if len(sandi) < 6:
            raise gagal(Reason.PASSWORD_TOO_SHORT, "kata sandi paling sedikit 6 karakter")
        if ulang is not None and ulang != sandi:
            raise gagal(Reason.PASSWORD_MISMATCH, "kedua kata sandi berbeda")
        if p.db.execute("SELECT 1 FROM akun WHERE surel = ?", (surel,)).fetchone():
            raise gagal(Reason.EMAIL_TAKEN, "surel ini sudah terdaftar")
        akun_id = "AK" + secrets.token_hex(8)
        p.db.execute(
            "INSERT INTO akun (id, nama, surel, sandi, dibuat_pada) VALUES (?, ?, ?, ?, ?)",
            (akun_id, nama, surel, hash_sandi(sandi), time.time()),
        )
        p.otp("surel", surel)
        return jawab({"id_akun": akun_id, "pesan": "kode konfirmasi dikirim ke surel Anda"})

    @handler(False)
    def konfirmasi_surel(request: Request, sesi: sqlite3.Row, form: Any) -> Response:
        akun = p.akun(field(form, "id_akun"))
        if akun is None:
            raise Gagal("AKUN_TIDAK_ADA", "akun tidak ditemukan")
        if akun["surel_dikonfirmasi_pada"] is None:
            if not p.use_otp("surel", akun["surel"], field(form, "kode")):
                raise Gagal(OTP_WRONG, "kode salah atau sudah dipakai")
            p.db.execute(
                "UPDATE akun SET surel_dikonfirmasi_pada = ? WHERE id = ?", (time.time(), akun["id"])
            )
        return jawab({"pesan": "surel dikonfirmasi"})

    @handler(False)
    def masuk(request: Request, sesi: sqlite3.Row, form: Any) -> Response:
        surel, sandi = field(form, "surel", 254).lower(), str(form.get("kata_sandi") or "")
        akun = p.db.execute("SELECT * FROM akun WHERE surel = ?", (surel,)).fetchone()
        if akun is None or not sandi_cocok(akun["sandi"], sandi):
            raise Gagal(BAD_LOGIN, "surel atau kata sandi salah")
        if akun["surel_dikonfirmasi_pada"] is None:
            raise Gagal(NOT_VERIFIED, "konfirmasi surel Anda dahulu")
        p.db.execute("DELETE FROM sesi WHERE id = ?", (sesi["id"],))  # a new session: no fixation
        sid, token = p.new_session(akun["id"])
        return p.set_session(jawab({"id_akun": akun["id"], "nama": akun["nama"]}), sid, token)

    @handler(True)
    def identitas(request: Request, sesi: sqlite3.Row, form: Any) -> Response:
        akun = p.akun(sesi["akun_id"])
        need(akun, "surel_dikonfirmasi_pada")
        nik, no_kk, tgl = field(form, "nik", 32), field(form, "no_kk", 32), field(form, "tgl_lahir", 10)
        try:
            parse_nik(nik)
            parse_kk(no_kk)
            tanggal = dt.date.fromisoformat(tgl)
        except NikError as err:
            raise gagal(Reason.NIK_MALFORMED, err.message) from None
        except ValueError:
            raise Gagal(FIELD_MISSING, "tgl_lahir: tulis TTTT-BB-HH") from None
        if akun["nik"] == nik:
            return jawab({"pesan": "identitas sudah diperiksa"})
        penduduk = p.db.execute("SELECT * FROM penduduk WHERE nik = ?", (nik,)).fetchone()
        if penduduk is None:
            raise gagal(Reason.NIK_NOT_FOUND, "NIK tidak ada di Dukcapil")
        if penduduk["no_kk"] != no_kk:
            raise gagal(Reason.NIK_KK_MISMATCH, "nomor KK bukan milik NIK ini")
        if penduduk["tgl_lahir"] != tanggal.isoformat():
            raise gagal(Reason.NIK_BIRTHDATE_MISMATCH, "tanggal lahir berbeda dengan data Dukcapil")
        if p.db.execute("SELECT 1 FROM akun WHERE nik = ? AND id <> ?", (nik, akun["id"])).fetchone():
            raise gagal(Reason.NIK_ALREADY_REGISTERED, "NIK ini sudah dipakai akun lain")
        others = p.db.execute(
            "SELECT COUNT(*) FROM penduduk WHERE no_kk = ? AND nik <> ? AND penerima = 1", (no_kk, nik)
        ).fetchone()[0]
        alasan = resident_eligibility(
            {
                "birth_date": tanggal,
                "occupation": penduduk["pekerjaan"],
                "is_recipient": bool(penduduk["penerima"]),
                "receives_other_aid": bool(penduduk["bansos_lain"]),
            },
            kk_recipients=others,
            on=p.reference_date,
        )
        if alasan is not None:
            raise gagal(alasan, "tidak memenuhi syarat program")
        p.db.execute(
            "UPDATE akun SET nik = ?, no_kk = ?, tgl_lahir = ?, identitas_pada = ? WHERE id = ?",
            (nik, no_kk, tanggal.isoformat(), time.time(), akun["id"]),
        )
        return jawab({"pesan": "identitas cocok"})

    @handler(True)
    def profil(request: Request, sesi: sqlite3.Row, form: Any) -> Response:
        akun = p.akun(sesi["akun_id"])
        need(akun, "identitas_pada")
        values = (
            field(form, "alamat", 500),
            field(form, "kode_pos", 10),
            field(form, "pendidikan"),
            field(form, "status_kerja"),
        )
        p.db.execute(
            "UPDATE akun SET alamat = ?, kode_pos = ?, pendidikan = ?, status_kerja = ?, "
            "profil_pada = COALESCE(profil_pada, ?) WHERE id = ?",
            (*values, time.time(), akun["id"]),
        )
        return jawab({"pesan": "profil disimpan"})

    @handler(True)
    def unggah_ktp(request: Request, sesi: sqlite3.Row, form: Any) -> Response:
        akun = p.akun(sesi["akun_id"])
        need(akun, "identitas_pada")
        upload = form.get(UPLOAD_FIELD)
        if not isinstance(upload, Berkas):
            raise Gagal(FIELD_MISSING, f"lampirkan foto KTP di isian {UPLOAD_FIELD}")
        data = upload.data
        verdict = validate_upload(data, upload.filename)
        p.db.execute(
            "INSERT INTO unggahan_ktp (akun_id, hasil, ukuran, sha256, dibuat_pada) VALUES (?, ?, ?, ?, ?)",
            (akun["id"], verdict.verdict, len(data), hashlib.sha256(data).hexdigest(), time.time()),
        )
        if not verdict.accepted:
            # The refused upload stays on record; the answer is still a 200 with the error inside.
            raise gagal(verdict.reason, verdict.message, keep=True)
        p.db.execute(
            "UPDATE akun SET ktp_diterima_pada = COALESCE(ktp_diterima_pada, ?) WHERE id = ?",
            (time.time(), akun["id"]),
        )
        return jawab({"pesan": "foto KTP diterima"})

    @handler(True)
    def nomor_hp(request: Request, sesi: sqlite3.Row, form: Any) -> Response:
        akun = p.akun(sesi["akun_id"])
        need(akun, "identitas_pada")
        typed = field(form, "no_hp", 32)
        nomor = normal_hp(typed)
        if nomor is None:
            raise gagal(Reason.PHONE_INVALID, f"{typed!r} bukan nomor HP Indonesia (08...)")
        if p.db.execute("SELECT 1 FROM akun WHERE no_hp = ? AND id <> ?", (nomor, akun["id"])).fetchone():
            raise gagal(Reason.PHONE_TAKEN, "nomor HP ini sudah dipakai akun lain")
        p.db.execute(
            "UPDATE akun SET no_hp = ?, hp_dikonfirmasi_pada = CASE WHEN no_hp = ? "
            "THEN hp_dikonfirmasi_pada END WHERE id = ?",
            (nomor, nomor, akun["id"]),
        )
        # The code is filed under the number as the applicant typed it and as normalised.
        kode = p.otp("sms", nomor)
        if typed != nomor:
            p.db.execute(
                "INSERT INTO kode_otp (saluran, tujuan, kode, dibuat_pada, dipakai) VALUES "
                "('sms', ?, ?, ?, 1)",
                (typed, kode, time.time()),
            )
        return jawab({"pesan": "kode dikirim lewat SMS"})

    @handler(True)
    def konfirmasi_hp(request: Request, sesi: sqlite3.Row, form: Any) -> Response:
        akun = p.akun(sesi["akun_id"])
        need(akun, "no_hp")
        if akun["hp_dikonfirmasi_pada"] is None:
            if not p.use_otp("sms", akun["no_hp"], field(form, "kode")):
                raise Gagal(OTP_WRONG, "kode salah atau sudah dipakai")
            p.db.execute("UPDATE akun SET hp_dikonfirmasi_pada = ? WHERE id = ?", (time.time(), akun["id"]))
        return jawab({"pesan": "nomor HP dikonfirmasi"})

    @handler(True)
    def tes(request: Request, sesi: sqlite3.Row, form: Any) -> Response:
        akun = p.akun(sesi["akun_id"])
        need(akun, "identitas_pada")
        given = form.get("jawaban")  # one field "ABCD..." or the field repeated once per question
        if isinstance(given, list):
            text = "".join(v for v in given if isinstance(v, str))
        else:
            text = field(form, "jawaban")
        jawaban = "".join(ch for ch in text.upper() if ch.isalpha())
        if len(jawaban) != TEST_QUESTIONS or set(jawaban) - set("ABCD"):
            raise Gagal(FIELD_MISSING, f"jawaban: {TEST_QUESTIONS} pilihan dari A, B, C, D")
        skor = sum(a == k for a, k in zip(jawaban, "ABCD" * 5, strict=False))
        p.db.execute(
            "UPDATE akun SET skor_tes = ?, tes_pada = COALESCE(tes_pada, ?) WHERE id = ?",
            (skor, time.time(), akun["id"]),
        )
        return jawab({"skor": skor})

    @handler(True)
    def gabung(request: Request, sesi: sqlite3.Row, form: Any) -> Response:
        akun = p.akun(sesi["akun_id"])
        need(
            akun,
            "surel_dikonfirmasi_pada",
            "identitas_pada",
            "profil_pada",
            "ktp_diterima_pada",
            "hp_dikonfirmasi_pada",
            "tes_pada",
        )
        nomor = int(request.path_params["nomor"])
        wave = p.db.execute("SELECT * FROM gelombang WHERE nomor = ?", (nomor,)).fetchone()
        if wave is None or not wave["dibuka"]:
            raise gagal(Reason.WAVE_NOT_OPEN, f"gelombang {nomor} tidak dibuka")
        if p.db.execute(
            "SELECT 1 FROM peserta_gelombang WHERE gelombang = ? AND akun_id = ?", (nomor, akun["id"])
        ).fetchone():
            raise gagal(Reason.ALREADY_JOINED, "sudah bergabung di gelombang ini")
        joined = p.db.execute(
            "SELECT COUNT(*) FROM peserta_gelombang WHERE gelombang = ?", (nomor,)
        ).fetchone()[0]
        if joined >= wave["kuota"]:
            raise gagal(Reason.WAVE_FULL, "kuota gelombang sudah penuh")
        p.db.execute(
            "INSERT INTO peserta_gelombang (gelombang, akun_id, dibuat_pada) VALUES (?, ?, ?)",
            (nomor, akun["id"], time.time()),
        )
        return jawab({"gelombang": nomor, "urutan": joined + 1})

    async def buka_gelombang(request: Request) -> Response:
        """Admin: open a wave (JSON {"nomor", "kuota"}); the key in ``Authorization: Kunci KEY``."""
        if p.admin_key and request.headers.get("authorization") != f"Kunci {p.admin_key}":
            return jawab_gagal("BUKAN_ADMIN", "kunci admin salah", 401)
        try:
            body = json.loads(await request.body())
            nomor, kuota = int(body["nomor"]), int(body["kuota"])
        except (ValueError, KeyError, TypeError):
            return jawab_gagal(FIELD_MISSING, 'kirim {"nomor": N, "kuota": K}', 400)
        p.db.execute(
            "INSERT INTO gelombang (nomor, kuota) VALUES (?, ?) ON CONFLICT (nomor) "
            "DO UPDATE SET kuota = excluded.kuota, dibuka = 1",
            (nomor, kuota),
        )
        return jawab({"gelombang": nomor, "kuota": kuota}, status=201)

    routes = [
        Route("/sehat", sehat, methods=["GET"]),
        Route("/daftar", halaman_daftar, methods=["GET"]),
        Route("/daftar", daftar, methods=["POST"]),
        Route("/daftar/konfirmasi", konfirmasi_surel, methods=["POST"]),
        Route("/masuk", masuk, methods=["POST"]),
        Route("/akun/identitas", identitas, methods=["POST"]),
        Route("/akun/profil", profil, methods=["POST"]),
        Route("/akun/ktp", unggah_ktp, methods=["POST"]),
        Route("/akun/hp", nomor_hp, methods=["POST"]),
        Route("/akun/hp/konfirmasi", konfirmasi_hp, methods=["POST"]),
        Route("/akun/tes", tes, methods=["POST"]),
        Route("/gelombang/{nomor:int}/gabung", gabung, methods=["POST"]),
        Route("/admin/gelombang", buka_gelombang, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.pendaftaran = p
    return app
