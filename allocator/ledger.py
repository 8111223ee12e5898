"""The usage ledger's layout in Redis and the script that counts a session's allocated time.

  sda:usage:<YYYY-MM-DD>  hash    a:<email> → allocated seconds, b:<email> → busy seconds that
                                  UTC day; expires SDA_USAGE_DAYS days after the day ends
  sda:stats               hash    store-wide totals for the metrics: gpu:allocated, gpu:busy,
                                  reclaims:<reason>, cruise:last_pass, cruise:last_failures

A mapping's allocated time is counted up to its `accrued_to` field, by a periodic pass and by
the script that drops the mapping, each adding only what lies after that mark: every second
is counted once, whichever replica or cruiser counts it. A clock behind the mark adds nothing
and never moves it back. Time since the mark that lies further back than the three days a
script may write (nobody counted for two days) goes to the oldest of them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

DAY = 86_400
STATS = "sda:stats"
WINDOW = 3  # day keys an accrual may write: the day before yesterday, yesterday, today
ALLOCATED, BUSY = "a:", "b:"  # field prefixes of a day's hash
GPU_ALLOCATED, GPU_BUSY = "gpu:allocated", "gpu:busy"
LAST_PASS, LAST_FAILURES = "cruise:last_pass", "cruise:last_failures"
RECLAIMS = "reclaims:"

# A Lua function for scripts whose KEYS[k .. k+2] are the window's days and KEYS[k+3] STATS.
ACCRUE_FUNCTION = """
local function accrue(session_key, email, k, now, first_day, keep)
  local marks = redis.call('HMGET', session_key, 'accrued_to', 'allocated_at')
  local from = tonumber(marks[1] or marks[2])
  if not from or now <= from then return 0 end
  local total = 0
  for i = 0, 2 do
    local start = first_day + i * 86400
    local s = from
    if i > 0 and s < start then s = start end
    local e = math.min(now, start + 86400)
    if e > s then
      redis.call('HINCRBYFLOAT', KEYS[k + i], 'a:' .. email, e - s)
      redis.call('EXPIREAT', KEYS[k + i], start + 86400 + keep)
      total = total + e - s
    end
  end
  redis.call('HINCRBYFLOAT', KEYS[k + 3], 'gpu:allocated', total)
  redis.call('HSET', session_key, 'accrued_to', now)
  return total
end
"""


def day_of(stamp: float) -> date:
    return datetime.fromtimestamp(stamp, UTC).date()


def day_start(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def day_key(day: date) -> str:
    return f"sda:usage:{day.isoformat()}"


def window_keys(now: float) -> list[str]:
    """The keys an accrual at `now` may write: the window's days, oldest first, then STATS."""
    today = day_of(now)
    return [day_key(today - timedelta(days=back)) for back in (2, 1, 0)] + [STATS]


def window_args(now: float, keep_days: int) -> list[str | int | float]:
    """`now`, the window's first day's start and how long a day's hash outlives the day."""
    first = day_of(now) - timedelta(days=WINDOW - 1)
    return [repr(now), int(day_start(first)), keep_days * DAY]


def resets_at(now: float) -> float:
    """The next UTC midnight: when a new day's usage (and quota) begins."""
    return day_start(day_of(now) + timedelta(days=1))
