"""The reference registration API, by registration step (docs/api.md, docs/serve.md, docs/security.md).

Each step's module owns its data operations (a ``...Store`` class over the shared `store.Store`)
and its routes (``add_..._routes(router, ...)`` registers them on the FastAPI ``APIRouter`` it is
given); `app.create_app` only wires them, on the app's own router (an included router would cost
FastAPI 0.165 an extra matching layer on every request).

Steps:
- `accounts`: email verification and resend, login with its throttles; its routes.
- `signup`: sign-up's rules, the one sign-up interface `Signups` (group commit; the engine's batch
  path chosen once at start-up), and the lean ASGI path for plain sign-ups.
- `otps`: one-time codes (send, check, guess budgets) and the sandbox outbox route.
- `progress`: which steps an applicant has done; the identity, profile and test steps.
- `phone`: the phone claim and its SMS code.
- `uploads`: the KTP upload (multipart stream, bounded decode pool, verdict stored).
- `waves`: joining and reading waves, opening and closing them, the lottery carry-over;
  `selection` picks the recipients when a wave closes.
- `stats`: the server-side counts (``GET /v1/admin/stats``), the outcome counter, the snapshot.
- `admin`: the admin routes behind the admin token (`admin_auth`).

Plumbing:
- `store`: the shared engine, one write transaction per call, the idempotent answer kept with it.
- `idempotency`: ``Idempotency-Key`` records, middleware and the dependency that claims a key.
- `auth`: bearer tokens and the route dependencies that authenticate a caller.
- `body_limits`, `connections`, `login_throttle`, `attempt_budgets`: issue 13's limits.
- `access_log`, `health`, `responses`, `openapi`, `models`, `settings`, `registry`: the access
  log, /healthz and background faults, the answer shapes, the documented refusals, the request and
  response bodies, serve's settings, the simulated Dukcapil link.
- `cli` (``prakerja-sim serve``) and `testing` (start a server for tests and benchmarks).

The rules themselves (phone, email, NIK, the registry match, eligibility, uploads, the test's score)
are simulator/rules/; the schema and database helpers are simulator/database/.
"""
