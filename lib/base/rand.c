/*
 * Fast ids: a per-thread xoshiro256** generator seeded once per thread from
 * getrandom(), so generating a trace or span id costs no syscall and no
 * lock. Not for cryptography.
 */
#include <pthread.h>
#include <string.h>
#include <sys/random.h>

#include <tracemart/base.h>

struct rng {
	uint64_t s[4];
	bool seeded;
};

static __thread struct rng rng;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* A forked child starts with a copy of its parent's state: without a
 * reseed both would hand out the same ids. The child has one thread, the
 * one that forked, so resetting its state is enough. */
static void reseed_in_child(void)
{
	rng.seeded = false;
}

static void register_atfork(void)
{
	pthread_atfork(NULL, NULL, reseed_in_child);
}

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void seed(struct rng *r)
{
	uint64_t seedv = 0;
	size_t got = 0;

	pthread_once(&atfork_once, register_atfork);
	while (got < sizeof seedv) {
		ssize_t n = getrandom((char *)&seedv + got, sizeof seedv - got, 0);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	/* Mix in the thread's address and time so a failed getrandom() still
	 * gives different threads different streams. */
	seedv ^= (uint64_t)(uintptr_t)r ^ tm_clock_mono_ns();
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seedv);
	r->seeded = true;
}

uint64_t tm_rand_u64(void)
{
	struct rng *r = &rng;
	if (__builtin_expect(!r->seeded, 0))
		seed(r);
	uint64_t *s = r->s;
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

uint64_t tm_rand_below(uint64_t bound)
{
	/* Lemire's nearly-divisionless method, exact (rejection on the tail). */
	__uint128_t m = (__uint128_t)tm_rand_u64() * bound;
	uint64_t l = (uint64_t)m;
	if (l < bound) {
		uint64_t t = -bound % bound;
		while (l < t) {
			m = (__uint128_t)tm_rand_u64() * bound;
			l = (uint64_t)m;
		}
	}
	return (uint64_t)(m >> 64);
}

double tm_rand_double(void)
{
	return (double)(tm_rand_u64() >> 11) * 0x1.0p-53;
}

void tm_rand_bytes(void *out, size_t n)
{
	unsigned char *p = out;
	while (n >= 8) {
		uint64_t v = tm_rand_u64();
		memcpy(p, &v, 8);
		p += 8;
		n -= 8;
	}
	if (n) {
		uint64_t v = tm_rand_u64();
		memcpy(p, &v, n);
	}
}

void tm_uuid4(char out[37])
{
	unsigned char b[16];
	char hex[33];

	tm_rand_bytes(b, sizeof b);
	b[6] = (b[6] & 0x0f) | 0x40; /* RFC 9562 §5.4: version 4 */
	b[8] = (b[8] & 0x3f) | 0x80; /* variant 10 */
	tm_hex_encode(b, 16, hex);
	memcpy(out, hex, 8);
	out[8] = '-';
	memcpy(out + 9, hex + 8, 4);
	out[13] = '-';
	memcpy(out + 14, hex + 12, 4);
	out[18] = '-';
	memcpy(out + 19, hex + 16, 4);
	out[23] = '-';
	memcpy(out + 24, hex + 20, 12);
	out[36] = '\0';
}

void tm_hex_encode(const void *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	const unsigned char *p = in;
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = '\0';
}

int tm_hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

tm_err tm_hex_decode(const char *in, size_t n, void *out)
{
	unsigned char *p = out;
	for (size_t i = 0; i < n; i++) {
		int hi = tm_hex_value(in[2 * i]), lo = hi < 0 ? -1 : tm_hex_value(in[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return TM_ERR_PARSE;
		p[i] = (unsigned char)(hi << 4 | lo);
	}
	return TM_OK;
}
