/* SPDX-License-Identifier: Apache-2.0 */
/*
 * MMDS (vmm/mmds/): the data store (PUT, merge-patch PATCH, GET, the size
 * limit, configuration), V2 tokens, the guest's HTTP requests and their
 * answers, and the network stack driven with frames a simulated guest
 * builds: ARP, the TCP handshake, V1 reads and the V2 token flow, large
 * replies cut to the MSS and the window, FIN and RST, retransmitted and
 * out-of-order segments, timeouts, connection limits. The guest side
 * builds and checks its frames with its own code (not frame.c), so a
 * checksum or layout mistake in the stack shows.
 */
#include <errno.h>

#include "../../lib/util.h"
#include "../../vmm/mmds/frame.h"
#include "../../vmm/mmds/responder.h"
#include "../../vmm/mmds/stack.h"
#include "../../vmm/mmds/store.h"
#include "../../vmm/mmds/token.h"
#include "mmds_frames.h"
#include "unit.h"

static uint64_t fake_now = 1000000;

static uint64_t fake_clock(void *ctx)
{
    (void)ctx;
    return fake_now;
}

static const char sample_doc[] =
    "{\"latest\":{\"meta-data\":{\"ami-id\":\"ami-87654321\",\"reservation-id\":\"r-79054aef\","
    "\"network\":{\"interfaces\":{}}},\"user-data\":\"hello\"},\"age\":43,"
    "\"phones\":[\"+401234567\",\"+441234567\"],\"we/ird~key\":\"slash\"}";

static struct mmds_store *new_store(size_t limit, const char *doc)
{
    struct vr_error *err = NULL;
    struct mmds_store *s = NULL;

    if (!CHECK_EQ_I64(mmds_store_create(limit, &s, &err), 0))
        return NULL;
    mmds_store_set_clock(s, fake_clock, NULL);
    if (doc && !CHECK_EQ_I64(mmds_store_put(s, doc, strlen(doc), &err), 0))
        printf("  put: %s\n", err ? err->msg : "?");
    vr_error_free(&err);
    return s;
}

static void set_version(struct mmds_store *s, enum mmds_version v, bool imds_compat)
{
    struct mmds_config cfg;

    mmds_store_get_config(s, &cfg);
    cfg.version = v;
    cfg.imds_compat = imds_compat;
    CHECK_EQ_I64(mmds_store_set_config(s, &cfg, NULL), 0);
}

/* --- the data store ------------------------------------------------------------------------ */

TEST(store_put_get_patch)
{
    struct mmds_store *s = new_store(MMDS_DEFAULT_SIZE_LIMIT, NULL);
    struct vr_error *err = NULL;
    char *text;

    REQUIRE(s);
    text = mmds_store_get_json(s);
    CHECK_STR_EQ(text, "{}"); /* never written: an empty object, as Firecracker shows it */
    free(text);
    CHECK_EQ_I64(mmds_store_patch(s, "{\"a\":1}", 7, &err), -ENODATA);
    REQUIRE(err);
    CHECK_STR_CONTAINS(err->msg, "PUT");
    vr_error_free(&err);

    const char *doc = "{\"b\":{\"x\":1,\"y\":[1,2]},\"a\":\"s\",\"c\":true}";
    REQUIRE(mmds_store_put(s, doc, strlen(doc), &err) == 0);
    text = mmds_store_get_json(s);
    CHECK_STR_EQ(text, "{\"a\":\"s\",\"b\":{\"x\":1,\"y\":[1,2]},\"c\":true}"); /* sorted keys */
    free(text);

    /* RFC 7396: null removes, objects merge, anything else replaces, nulls in new members vanish.
     */
    const char *patch =
        "{\"a\":null,\"b\":{\"y\":{\"z\":null,\"k\":2},\"x\":null},\"d\":{\"e\":null,"
        "\"f\":\"g\"},\"c\":[3]}";
    REQUIRE(mmds_store_patch(s, patch, strlen(patch), &err) == 0);
    text = mmds_store_get_json(s);
    CHECK_STR_EQ(text, "{\"b\":{\"y\":{\"k\":2}},\"c\":[3],\"d\":{\"f\":\"g\"}}");
    free(text);

    /* A patch that is not an object replaces the whole document. */
    REQUIRE(mmds_store_patch(s, "\"just text\"", 11, &err) == 0);
    text = mmds_store_get_json(s);
    CHECK_STR_EQ(text, "\"just text\"");
    free(text);

    /* PUT replaces, whatever was there. */
    REQUIRE(mmds_store_put(s, "{\"only\":{}}", 11, &err) == 0);
    text = mmds_store_get_json(s);
    CHECK_STR_EQ(text, "{\"only\":{}}");
    free(text);
    mmds_store_destroy(s);
}

TEST(store_refuses_bad_json)
{
    struct mmds_store *s = new_store(MMDS_DEFAULT_SIZE_LIMIT, "{\"keep\":1}");
    static const char *const bad[] = {
        "", "{", "{\"a\":1,}", "{\"a\":1}{}", "nul", "{\"a\":1,\"a\":2}", "{\"a\"\n:\x01}"};
    struct vr_error *err = NULL;
    char *text;

    REQUIRE(s);
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        CHECK_EQ_I64(mmds_store_put(s, bad[i], strlen(bad[i]), &err), -EINVAL);
        if (CHECK(err))
            CHECK(strchr(err->msg, '\n') == NULL);
        vr_error_free(&err);
        CHECK_EQ_I64(mmds_store_patch(s, bad[i], strlen(bad[i]), &err), -EINVAL);
        vr_error_free(&err);
    }
    text = mmds_store_get_json(s);
    CHECK_STR_EQ(text, "{\"keep\":1}");
    free(text);
    mmds_store_destroy(s);
}

TEST(store_size_limit)
{
    struct mmds_store *s = new_store(40, NULL);
    struct vr_error *err = NULL;
    char *text;

    REQUIRE(s);
    /* The limit counts compact JSON: whitespace in the request does not count. */
    const char *fits =
        "{ \"a\" : \"0123456789\" ,  \"b\" : \"0123456789\" }"; /* 35 bytes compact */
    CHECK_EQ_I64(mmds_store_put(s, fits, strlen(fits), &err), 0);
    const char *big = "{\"a\":\"0123456789012345678901234567890123456789\"}";
    CHECK_EQ_I64(mmds_store_put(s, big, strlen(big), &err), -E2BIG);
    if (CHECK(err))
        CHECK_STR_CONTAINS(err->msg, "limit is 40");
    vr_error_free(&err);
    CHECK_EQ_I64(mmds_store_patch(s, "{\"c\":\"xx\"}", 10, &err), -E2BIG);
    vr_error_free(&err);
    text = mmds_store_get_json(s);
    CHECK_STR_EQ(text, "{\"a\":\"0123456789\",\"b\":\"0123456789\"}"); /* unchanged */
    free(text);
    /* A patch that shrinks the document passes. */
    CHECK_EQ_I64(mmds_store_patch(s, "{\"a\":null,\"c\":\"xx\"}", 19, &err), 0);
    mmds_store_destroy(s);
}

static char *read_path(struct mmds_store *s, const char *path, enum mmds_format fmt, int *ret,
                       enum mmds_format *used)
{
    enum mmds_format dummy;
    char *out = NULL;
    size_t len = 0;

    *ret = mmds_store_read(s, path, fmt, used ? used : &dummy, &out, &len);
    if (*ret == 0)
        CHECK_EQ_U64(strlen(out), len);
    return out;
}

TEST(store_read_formats)
{
    struct mmds_store *s = new_store(MMDS_DEFAULT_SIZE_LIMIT, sample_doc);
    enum mmds_format used;
    char *t;
    int ret;

    REQUIRE(s);
    t = read_path(s, "/", MMDS_FORMAT_IMDS, &ret, NULL);
    CHECK_STR_EQ(t, "age\nlatest/\nphones\nwe/ird~key");
    free(t);
    t = read_path(s, "/latest/meta-data", MMDS_FORMAT_IMDS, &ret, NULL);
    CHECK_STR_EQ(t, "ami-id\nnetwork/\nreservation-id");
    free(t);
    /* Trailing and doubled slashes, as Firecracker cleans the URI. */
    t = read_path(s, "//latest///meta-data/", MMDS_FORMAT_IMDS, &ret, NULL);
    CHECK_STR_EQ(t, "ami-id\nnetwork/\nreservation-id");
    free(t);
    t = read_path(s, "/latest/meta-data/ami-id", MMDS_FORMAT_IMDS, &ret, NULL);
    CHECK_STR_EQ(t, "ami-87654321");
    free(t);
    t = read_path(s, "/latest/meta-data/network/interfaces", MMDS_FORMAT_IMDS, &ret, NULL);
    CHECK_STR_EQ(t, ""); /* an empty object lists nothing */
    free(t);
    t = read_path(s, "/latest/meta-data/ami-id", MMDS_FORMAT_JSON, &ret, &used);
    CHECK_STR_EQ(t, "\"ami-87654321\"");
    CHECK(used == MMDS_FORMAT_JSON);
    free(t);
    t = read_path(s, "/latest", MMDS_FORMAT_JSON, &ret, NULL);
    CHECK_STR_CONTAINS(t, "{\"meta-data\":{\"ami-id\":\"ami-87654321\"");
    free(t);
    /* Numbers and arrays have no IMDS form; JSON shows them. Array elements by index. */
    t = read_path(s, "/age", MMDS_FORMAT_IMDS, &ret, NULL);
    CHECK_EQ_I64(ret, -EOPNOTSUPP);
    t = read_path(s, "/age", MMDS_FORMAT_JSON, &ret, NULL);
    CHECK_STR_EQ(t, "43");
    free(t);
    t = read_path(s, "/phones", MMDS_FORMAT_IMDS, &ret, NULL);
    CHECK_EQ_I64(ret, -EOPNOTSUPP);
    t = read_path(s, "/phones/1", MMDS_FORMAT_IMDS, &ret, NULL);
    CHECK_STR_EQ(t, "+441234567");
    free(t);
    t = read_path(s, "/phones/01", MMDS_FORMAT_IMDS, &ret, NULL);
    CHECK_EQ_I64(ret, -ENOENT);
    t = read_path(s, "/phones/2", MMDS_FORMAT_IMDS, &ret, NULL);
    CHECK_EQ_I64(ret, -ENOENT);
    /* JSON-pointer escapes: ~1 is '/', ~0 is '~'; a lone '~' is not an escape. */
    t = read_path(s, "/we~1ird~0key", MMDS_FORMAT_IMDS, &ret, NULL);
    CHECK_STR_EQ(t, "slash");
    free(t);
    t = read_path(s, "/we~2ird", MMDS_FORMAT_IMDS, &ret, NULL);
    CHECK_EQ_I64(ret, -ENOENT);
    t = read_path(s, "/latest/nothing", MMDS_FORMAT_IMDS, &ret, NULL);
    CHECK_EQ_I64(ret, -ENOENT);
    t = read_path(s, "/latest/user-data/deeper", MMDS_FORMAT_IMDS, &ret, NULL);
    CHECK_EQ_I64(ret, -ENOENT);

    /* imds_compat: IMDS text whatever the client asks for. */
    set_version(s, MMDS_V1, true);
    t = read_path(s, "/latest/meta-data/ami-id", MMDS_FORMAT_JSON, &ret, &used);
    CHECK_STR_EQ(t, "ami-87654321");
    CHECK(used == MMDS_FORMAT_IMDS);
    free(t);
    mmds_store_destroy(s);

    /* Nothing to read before the first PUT. */
    s = new_store(MMDS_DEFAULT_SIZE_LIMIT, NULL);
    REQUIRE(s);
    t = read_path(s, "/", MMDS_FORMAT_JSON, &ret, NULL);
    CHECK_EQ_I64(ret, -ENOENT);
    mmds_store_destroy(s);
}

TEST(store_config)
{
    struct mmds_store *s = new_store(MMDS_DEFAULT_SIZE_LIMIT, NULL);
    struct vr_error *err = NULL;
    struct mmds_config cfg;
    enum mmds_version v;
    uint32_t ip = 0;

    REQUIRE(s);
    mmds_store_get_config(s, &cfg);
    CHECK(cfg.version == MMDS_V1);
    CHECK_EQ_U64(cfg.ipv4, 0xa9fea9fe);
    CHECK(!cfg.imds_compat);
    CHECK_EQ_U64(mmds_store_ipv4(s), 0xa9fea9fe);

    CHECK_EQ_I64(mmds_parse_ipv4("169.254.170.2", &ip, &err), 0);
    CHECK_EQ_U64(ip, 0xa9feaa02);
    static const char *const bad_ip[] = {
        "10.0.0.1", "169.254.1",     "169.254.1.256", "169.254.01.2", "169.254.1.2 ",
        "",         "169.254.1.2.3", "a.b.c.d",       "169.255.0.1",  "169..254.1"};
    for (size_t i = 0; i < ARRAY_SIZE(bad_ip); i++) {
        CHECK_EQ_I64(mmds_parse_ipv4(bad_ip[i], &ip, &err), -EINVAL);
        vr_error_free(&err);
    }
    cfg.ipv4 = 0x0a000001; /* 10.0.0.1 */
    CHECK_EQ_I64(mmds_store_set_config(s, &cfg, &err), -EINVAL);
    if (CHECK(err))
        CHECK_STR_CONTAINS(err->msg, "10.0.0.1 is not link-local");
    vr_error_free(&err);
    CHECK_EQ_U64(mmds_store_ipv4(s), 0xa9fea9fe); /* unchanged */

    CHECK_EQ_I64(mmds_parse_version("V2", &v, &err), 0);
    CHECK(v == MMDS_V2);
    CHECK_EQ_I64(mmds_parse_version("v2", &v, &err), -EINVAL);
    vr_error_free(&err);
    CHECK_STR_EQ(mmds_version_name(MMDS_V2), "V2");
    cfg = (struct mmds_config){.version = MMDS_V2, .ipv4 = 0xa9feaa02, .imds_compat = true};
    CHECK_EQ_I64(mmds_store_set_config(s, &cfg, &err), 0);
    mmds_store_get_config(s, &cfg);
    CHECK(cfg.version == MMDS_V2 && cfg.imds_compat && cfg.ipv4 == 0xa9feaa02);
    mmds_store_destroy(s);
}

/* --- tokens -------------------------------------------------------------------------------- */

TEST(token_siphash_vectors)
{
    /* The reference vectors of SipHash-2-4: key 00..0f, messages 00, 00 01, ... */
    uint8_t key[16], msg[15], out[16];
    static const uint8_t h64_empty[8] = {0x31, 0x0e, 0x0e, 0xdd, 0x47, 0xdb, 0x6f, 0x72};
    static const uint8_t h128_empty[16] = {0xa3, 0x81, 0x7f, 0x04, 0xba, 0x25, 0xa8, 0xe6,
                                           0x6d, 0xf6, 0x72, 0x14, 0xc7, 0x55, 0x02, 0x93};
    static const uint8_t h64_15[8] = {0xe5, 0x45, 0xbe, 0x49, 0x61, 0xca, 0x29, 0xa1};

    for (int i = 0; i < 16; i++)
        key[i] = (uint8_t)i;
    for (int i = 0; i < 15; i++)
        msg[i] = (uint8_t)i;
    mmds_siphash(key, msg, 0, out, 8);
    CHECK_MEM_EQ(out, h64_empty, 8);
    mmds_siphash(key, msg, 0, out, 16);
    CHECK_MEM_EQ(out, h128_empty, 16);
    mmds_siphash(key, msg, 15, out, 8);
    CHECK_MEM_EQ(out, h64_15, 8);
}

TEST(token_base64_strict)
{
    uint8_t in[5] = {0xfb, 0xff, 0x00, 0x61, 0x62}, out[8];
    char text[16];

    mmds_base64_encode(in, 5, text);
    CHECK_STR_EQ(text, "+/8AYWI=");
    CHECK_EQ_I64(mmds_base64_decode(text, 8, out, sizeof(out)), 5);
    CHECK_MEM_EQ(out, in, 5);
    mmds_base64_encode(in, 4, text);
    CHECK_STR_EQ(text, "+/8AYQ==");
    CHECK_EQ_I64(mmds_base64_decode("+/8AYQ==", 8, out, sizeof(out)), 4);
    CHECK_EQ_I64(mmds_base64_decode("+/8AYR==", 8, out, sizeof(out)), -1); /* not canonical */
    CHECK_EQ_I64(mmds_base64_decode("+/8AYQ=", 7, out, sizeof(out)), -1);
    CHECK_EQ_I64(mmds_base64_decode("+/8A=QAA", 8, out, sizeof(out)), -1);
    CHECK_EQ_I64(mmds_base64_decode("+/8AYQ==AAAA", 12, out, sizeof(out)), -1);
    CHECK_EQ_I64(mmds_base64_decode("+/8A YQ=", 8, out, sizeof(out)), -1);
    CHECK_EQ_I64(mmds_base64_decode("AAAAAAAAAAAA", 12, out, 8), -1); /* too long for out */
}

TEST(token_expiry_and_forgery)
{
    struct mmds_store *s = new_store(MMDS_DEFAULT_SIZE_LIMIT, NULL);
    struct mmds_store *other = new_store(MMDS_DEFAULT_SIZE_LIMIT, NULL);
    struct vr_error *err = NULL;
    char *token = NULL, *token2 = NULL;

    REQUIRE(s && other);
    fake_now = 5000000;
    REQUIRE(mmds_store_new_token(s, 10, &token, &err) == 0);
    REQUIRE(mmds_store_new_token(s, 10, &token2, &err) == 0);
    CHECK_EQ_U64(strlen(token), MMDS_TOKEN_TEXT_LEN);
    CHECK(strcmp(token, token2) != 0); /* same expiry, different nonce */
    CHECK(mmds_store_token_valid(s, token, strlen(token)));
    CHECK(!mmds_store_token_valid(other, token, strlen(token))); /* another key */
    fake_now += 9999;
    CHECK(mmds_store_token_valid(s, token, strlen(token)));
    fake_now += 1;
    CHECK(!mmds_store_token_valid(s, token, strlen(token))); /* expired at 10 s */

    /* Moving the expiry without the key breaks the tag. */
    uint8_t raw[MMDS_TOKEN_BYTES];
    char forged[MMDS_TOKEN_TEXT_LEN + 1];
    REQUIRE(mmds_base64_decode(token, strlen(token), raw, sizeof(raw)) == MMDS_TOKEN_BYTES);
    put_le64(raw, get_le64(raw) + 3600 * 1000);
    mmds_base64_encode(raw, sizeof(raw), forged);
    CHECK(!mmds_store_token_valid(s, forged, strlen(forged)));
    CHECK(!mmds_store_token_valid(s, "", 0));
    CHECK(!mmds_store_token_valid(s, "not a token", 11));

    for (uint64_t ttl = 0; ttl < 3; ttl += 2) { /* 0 and 2: out of range, in range */
        char *t = NULL;
        int ret = mmds_store_new_token(s, ttl, &t, &err);

        CHECK_EQ_I64(ret, ttl ? 0 : -EINVAL);
        free(t);
        vr_error_free(&err);
    }
    free(token2);
    token2 = NULL;
    CHECK_EQ_I64(mmds_store_new_token(s, MMDS_TOKEN_TTL_MAX + 1, &token2, &err), -EINVAL);
    CHECK(token2 == NULL);
    vr_error_free(&err);
    free(token);
    mmds_store_destroy(s);
    mmds_store_destroy(other);
}

/* --- HTTP requests and answers ------------------------------------------------------------- */

/* Ask the responder directly; the reply's status is checked against want. */
static void ask(struct mmds_store *s, const char *req, int want, struct answer *a)
{
    struct mmds_reply r = {0};

    *a = (struct answer){0};
    CHECK_EQ_U64(mmds_request_length((const uint8_t *)req, strlen(req)), strlen(req));
    if (!CHECK_EQ_I64(mmds_answer(s, (const uint8_t *)req, strlen(req), &r), 0))
        return;
    if (parse_answer(r.data, r.len, a) && !CHECK_EQ_I64(a->status, want))
        printf("  request: %s\n  answer: %s\n", req, r.data);
    CHECK_EQ_I64(r.status, a->status);
    if (strstr(a->head, "Connection: close"))
        CHECK(r.close);
    else
        CHECK(!r.close);
    mmds_reply_release(&r);
}

TEST(request_length_finds_the_blank_line)
{
    static const struct {
        const char *text;
        size_t len;
    } cases[] = {
        {"GET / HTTP/1.1\r\n\r\n", 18},
        {"GET / HTTP/1.1\n\n", 16},
        {"GET / HTTP/1.1\r\nA: b\r\n\r\nGET /x", 24},
        {"\r\n\r\nGET / HTTP/1.1\r\n\r\n", 22},
        {"GET / HTTP/1.1\r\n", 0},
        {"GET / HTTP/1.1\r\nA: b\r\n\r", 0},
        {"", 0},
    };

    for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
        CHECK_EQ_U64(mmds_request_length((const uint8_t *)cases[i].text, strlen(cases[i].text)),
                     cases[i].len);
}

TEST(answer_v1_reads)
{
    struct mmds_store *s = new_store(MMDS_DEFAULT_SIZE_LIMIT, sample_doc);
    struct answer a;

    REQUIRE(s);
    ask(s, "GET /latest/meta-data HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n", 200, &a);
    CHECK_STR_EQ(a.body, "ami-id\nnetwork/\nreservation-id");
    CHECK_STR_CONTAINS(a.head, "Content-Type: text/plain\r\n");
    CHECK(strstr(a.head, "Connection:") == NULL); /* HTTP/1.1 keeps the connection */
    answer_free(&a);
    ask(s, "GET /latest/meta-data/ami-id HTTP/1.1\r\naccept: application/json\r\n\r\n", 200, &a);
    CHECK_STR_EQ(a.body, "\"ami-87654321\"");
    CHECK_STR_CONTAINS(a.head, "Content-Type: application/json\r\n");
    answer_free(&a);
    /* Other Accept values get IMDS text (as micro_http reads Accept). */
    ask(s, "GET /latest/meta-data/ami-id HTTP/1.1\r\nAccept: */*\r\n\r\n", 200, &a);
    CHECK_STR_EQ(a.body, "ami-87654321");
    answer_free(&a);
    /* An absolute URI, a query string, and HTTP/1.0 (which closes). */
    ask(s, "GET http://169.254.169.254/latest/user-data?x=1 HTTP/1.0\r\n\r\n", 200, &a);
    CHECK_STR_EQ(a.body, "hello");
    CHECK_EQ_I64(a.minor, 0);
    CHECK_STR_CONTAINS(a.head, "Connection: close\r\n");
    answer_free(&a);
    ask(s, "GET /latest/user-data HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", 200, &a);
    CHECK_STR_CONTAINS(a.head, "Connection: keep-alive\r\n");
    answer_free(&a);
    ask(s, "GET /latest/user-data HTTP/1.1\r\nConnection: close\r\n\r\n", 200, &a);
    CHECK_STR_CONTAINS(a.head, "Connection: close\r\n");
    answer_free(&a);
    /* V1 ignores tokens, even invalid ones. */
    ask(s, "GET /latest/user-data HTTP/1.1\r\nX-metadata-token: bogus\r\n\r\n", 200, &a);
    answer_free(&a);
    ask(s, "GET /latest/missing HTTP/1.1\r\n\r\n", 404, &a);
    CHECK_STR_CONTAINS(a.body, "/latest/missing");
    answer_free(&a);
    ask(s, "GET /age HTTP/1.1\r\n\r\n", 501, &a);
    answer_free(&a);
    ask(s, "GET /age HTTP/1.1\r\nAccept: application/json\r\n\r\n", 200, &a);
    CHECK_STR_EQ(a.body, "43");
    answer_free(&a);
    set_version(s, MMDS_V1, true); /* imds_compat */
    ask(s, "GET /latest/meta-data/ami-id HTTP/1.1\r\nAccept: application/json\r\n\r\n", 200, &a);
    CHECK_STR_EQ(a.body, "ami-87654321");
    CHECK_STR_CONTAINS(a.head, "Content-Type: text/plain\r\n");
    answer_free(&a);
    mmds_store_destroy(s);
}

static char *get_token(struct mmds_store *s, const char *ttl_header, int want)
{
    char req[256];
    struct answer a;
    char *token = NULL;

    snprintf(req, sizeof(req), "PUT /latest/api/token HTTP/1.1\r\n%s\r\n\r\n", ttl_header);
    ask(s, req, want, &a);
    if (want == 200 && a.text) {
        token = strdup(a.body);
        CHECK_STR_CONTAINS(a.head, "Content-Type: text/plain\r\n");
    }
    answer_free(&a);
    return token;
}

TEST(answer_v2_tokens)
{
    struct mmds_store *s = new_store(MMDS_DEFAULT_SIZE_LIMIT, sample_doc);
    char req[512];
    struct answer a;
    char *token;

    REQUIRE(s);
    set_version(s, MMDS_V2, false);
    fake_now = 7000000;
    ask(s, "GET /latest/user-data HTTP/1.1\r\n\r\n", 401, &a);
    answer_free(&a);
    ask(s, "GET /latest/user-data HTTP/1.1\r\nX-metadata-token: bogus\r\n\r\n", 401, &a);
    answer_free(&a);

    ask(s, "PUT /latest/api/token HTTP/1.1\r\nX-metadata-token-ttl-seconds: 60\r\n\r\n", 200, &a);
    CHECK_STR_CONTAINS(a.head, "X-metadata-token-ttl-seconds: 60\r\n"); /* echoed */
    token = strdup(a.body);
    CHECK_EQ_U64(strlen(token), MMDS_TOKEN_TEXT_LEN);
    answer_free(&a);
    snprintf(req, sizeof(req), "GET /latest/user-data HTTP/1.1\r\nX-metadata-token: %s\r\n\r\n",
             token);
    ask(s, req, 200, &a);
    CHECK_STR_EQ(a.body, "hello");
    answer_free(&a);
    snprintf(req, sizeof(req),
             "GET /latest/user-data HTTP/1.1\r\nx-aws-ec2-metadata-token:  %s \r\n\r\n", token);
    ask(s, req, 200, &a); /* EC2's header name, any case, blanks around the value */
    answer_free(&a);
    fake_now += 60000; /* expired */
    ask(s, req, 401, &a);
    answer_free(&a);
    free(token);

    /* EC2's TTL header name works too, and the answer echoes it. */
    token = get_token(s, "X-aws-ec2-metadata-token-ttl-seconds: 21600", 200);
    CHECK(token != NULL);
    free(token);
    /* V1 also issues tokens (so clients written for V2 work against V1). */
    set_version(s, MMDS_V1, false);
    token = get_token(s, "X-metadata-token-ttl-seconds: 1", 200);
    free(token);
    set_version(s, MMDS_V2, false);

    /* Bad TTLs, no TTL, a proxy, the wrong path. */
    static const char *const bad_ttl[] = {
        "X-metadata-token-ttl-seconds: 0",
        "X-metadata-token-ttl-seconds: 21601",
        "X-metadata-token-ttl-seconds: -5",
        "X-metadata-token-ttl-seconds: 1e3",
        "X-metadata-token-ttl-seconds: 99999999999",
        "X-metadata-token-ttl-seconds:",
        "Some-Other-Header: 60",
        "X-metadata-token-ttl-seconds: 60\r\nX-Forwarded-For: 1.2.3.4"};
    for (size_t i = 0; i < ARRAY_SIZE(bad_ttl); i++)
        CHECK(get_token(s, bad_ttl[i], 400) == NULL);
    ask(s, "PUT /latest/api/other HTTP/1.1\r\nX-metadata-token-ttl-seconds: 60\r\n\r\n", 404, &a);
    answer_free(&a);
    ask(s, "PUT //latest//api/token HTTP/1.1\r\nX-metadata-token-ttl-seconds: 60\r\n\r\n", 200, &a);
    answer_free(&a);
    mmds_store_destroy(s);
}

TEST(answer_errors)
{
    struct mmds_store *s = new_store(MMDS_DEFAULT_SIZE_LIMIT, sample_doc);
    static const struct {
        const char *req;
        int status;
        bool closes;
    } cases[] = {
        {"POST /latest HTTP/1.1\r\n\r\n", 405, false},
        {"PATCH /latest HTTP/1.1\r\n\r\n", 405, false},
        {"DELETE /latest HTTP/1.1\r\n\r\n", 405, false},
        {"HEAD /latest HTTP/1.1\r\n\r\n", 405, false},
        {"BREW /pot HTTP/1.1\r\n\r\n", 501, false},
        {"GET /latest HTTP/2.0\r\n\r\n", 501, true},
        {"GET /latest HTTX/1.1\r\n\r\n", 400, true},
        {"GET /latest\r\n\r\n", 400, true},
        {"GET  /latest HTTP/1.1\r\n\r\n", 400, true},
        {"GET latest HTTP/1.1\r\n\r\n", 400, true},
        {"GET http://169.254.169.254 HTTP/1.1\r\n\r\n", 400, false},
        {"G(T /latest HTTP/1.1\r\n\r\n", 400, true},
        {"GET /lat\x01st HTTP/1.1\r\n\r\n", 400, true},
        {"GET /latest HTTP/1.1\r\nNo colon here\r\n\r\n", 400, true},
        {"GET /latest HTTP/1.1\r\n folded: header\r\n\r\n", 400, true},
        {"GET /latest HTTP/1.1\r\nBad Name: x\r\n\r\n", 400, true},
        {"GET /latest HTTP/1.1\r\nX: a\x02"
         "b\r\n\r\n",
         400, true},
        {"GET /latest HTTP/1.1\r\nContent-Length: 5\r\n\r\n", 400, true},
        {"GET /latest HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400, true},
        {"GET /latest HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501, true},
        {"GET /latest HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 200, false},
        {"\r\n\r\n", 400, true},
    };
    struct answer a;

    REQUIRE(s);
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct mmds_reply r = {0};

        if (!CHECK_EQ_I64(mmds_answer(s, (const uint8_t *)cases[i].req, strlen(cases[i].req), &r),
                          0))
            continue;
        if (!CHECK_EQ_I64(r.status, cases[i].status) || !CHECK(r.close == cases[i].closes))
            printf("  case %zu: %s", i, r.data);
        if (parse_answer(r.data, r.len, &a) && cases[i].status == 405)
            CHECK_STR_CONTAINS(a.head, "Allow: GET, PUT\r\n");
        answer_free(&a);
        mmds_reply_release(&r);
    }

    /* Too many header lines; a NUL byte; a head longer than the limit. */
    char req[MMDS_REQUEST_MAX + 64];
    size_t n = (size_t)snprintf(req, sizeof(req), "GET / HTTP/1.1\r\n");
    for (int i = 0; i <= MMDS_REQUEST_MAX_HEADERS; i++)
        n += (size_t)snprintf(req + n, sizeof(req) - n, "H%d: v\r\n", i);
    snprintf(req + n, sizeof(req) - n, "\r\n");
    ask(s, req, 431, &a);
    answer_free(&a);
    struct mmds_reply r = {0};
    CHECK_EQ_I64(mmds_answer(s, (const uint8_t *)"GET /\0 HTTP/1.1\r\n\r\n", 19, &r), 0);
    CHECK_EQ_I64(r.status, 400);
    mmds_reply_release(&r);
    memset(req, 'a', sizeof(req));
    CHECK_EQ_I64(mmds_answer(s, (const uint8_t *)req, MMDS_REQUEST_MAX + 1, &r), 0);
    CHECK_EQ_I64(r.status, 431);
    CHECK(r.close);
    mmds_reply_release(&r);
    mmds_store_destroy(s);
}

/* --- a simulated guest, with its own frame code -------------------------------------------- */

struct guest {
    struct mmds_store *store;
    struct mmds_stack *stack;
    uint16_t port;
    uint32_t snd_nxt; /* the guest's next sequence number */
    uint32_t rcv_nxt; /* the next byte expected from MMDS */
    uint16_t window;
    char rx[128 * 1024];
    size_t rx_len;
    bool got_fin, got_rst;
    uint32_t mmds_window; /* the last window MMDS advertised */
    uint16_t max_payload;
    unsigned int frames;
};

static uint8_t frame_buf[MMDS_FRAME_MAX];

/* The next frame MMDS has for the guest, as a TCP segment; false when none. */
static bool next_seg(struct guest *g, struct seg *s)
{
    size_t len;

    if (!mmds_stack_has_frame(g->stack)) {
        CHECK_EQ_U64(mmds_stack_next_frame(g->stack, frame_buf, sizeof(frame_buf)), 0);
        return false;
    }
    len = mmds_stack_next_frame(g->stack, frame_buf, sizeof(frame_buf));
    if (!CHECK(len > 0))
        return false;
    g->frames++;
    return check_tcp_frame(frame_buf, len, s);
}

static bool guest_send_at(struct guest *g, uint32_t seq, uint8_t flags, const void *data,
                          size_t len)
{
    static uint8_t f[70000];
    struct out_seg o = {.src_ip = GUEST_IP,
                        .dst_ip = MMDS_IP,
                        .src_port = g->port,
                        .dst_port = 80,
                        .seq = seq,
                        .ack = (flags & TCP_ACK) ? g->rcv_nxt : 0,
                        .flags = flags,
                        .window = g->window,
                        .payload = data,
                        .len = len,
                        .partial_csum = true};
    size_t n = build_tcp(f, &o);
    uint8_t head[MMDS_PEEK_BYTES];

    memcpy(head, f, sizeof(head));
    CHECK(mmds_stack_may_take(g->stack, head, sizeof(head)));
    return mmds_stack_detour(g->stack, f, n);
}

static bool guest_send(struct guest *g, uint8_t flags, const void *data, size_t len)
{
    bool taken = guest_send_at(g, g->snd_nxt, flags, data, len);

    g->snd_nxt += (uint32_t)len + !!(flags & TCP_SYN) + !!(flags & TCP_FIN);
    return taken;
}

/* Take MMDS's segments: in-order data goes to g->rx; ACK each one when ack is set. */
static unsigned int guest_receive(struct guest *g, bool ack)
{
    unsigned int n = 0;
    struct seg s;

    while (next_seg(g, &s)) {
        n++;
        CHECK_EQ_U64(s.src_port, 80);
        CHECK_EQ_U64(s.dst_port, g->port);
        g->mmds_window = s.window;
        if (s.len > g->max_payload)
            g->max_payload = (uint16_t)s.len;
        if (s.flags & TCP_RST) {
            g->got_rst = true;
            continue;
        }
        if (s.seq == g->rcv_nxt && s.len) {
            if (!CHECK(g->rx_len + s.len < sizeof(g->rx)))
                break;
            memcpy(g->rx + g->rx_len, s.payload, s.len);
            g->rx_len += s.len;
            g->rx[g->rx_len] = '\0';
            g->rcv_nxt += (uint32_t)s.len;
        }
        if ((s.flags & TCP_FIN) && s.seq + s.len == g->rcv_nxt) {
            g->got_fin = true;
            g->rcv_nxt++;
        }
        if (ack && (s.len || (s.flags & TCP_FIN)))
            guest_send(g, TCP_ACK, NULL, 0);
    }
    return n;
}

static void guest_init(struct guest *g, struct mmds_store *store, uint16_t port)
{
    struct vr_error *err = NULL;

    memset(g, 0, sizeof(*g));
    g->store = store;
    g->port = port;
    g->snd_nxt = 0xfffffff0u; /* wraps during the tests */
    g->window = 65535;
    if (!CHECK_EQ_I64(mmds_stack_create(store, &g->stack, &err), 0))
        vr_error_free(&err);
}

/* The three-way handshake, with an MSS option. */
static bool guest_connect(struct guest *g, uint16_t mss)
{
    struct seg s;
    static uint8_t f[128];
    struct out_seg o = {.src_ip = GUEST_IP,
                        .dst_ip = MMDS_IP,
                        .src_port = g->port,
                        .dst_port = 80,
                        .seq = g->snd_nxt,
                        .flags = TCP_SYN,
                        .window = g->window,
                        .mss = mss};
    size_t n = build_tcp(f, &o);

    if (!CHECK(mmds_stack_detour(g->stack, f, n)))
        return false;
    g->snd_nxt++;
    if (!CHECK(next_seg(g, &s)) || !CHECK_EQ_U64(s.flags, TCP_SYN | TCP_ACK))
        return false;
    CHECK_EQ_U64(s.ack, g->snd_nxt);
    CHECK_EQ_U64(s.mss, 1460);
    CHECK_EQ_U64(s.len, 0);
    g->rcv_nxt = s.seq + 1;
    g->mmds_window = s.window;
    CHECK(guest_send(g, TCP_ACK, NULL, 0));
    CHECK(!mmds_stack_has_frame(g->stack)); /* the ACK needs no answer */
    return true;
}

/* Send a request, take the reply (ACKing it) and parse it. */
static bool guest_http(struct guest *g, const char *req, struct answer *a)
{
    size_t start = g->rx_len;

    *a = (struct answer){0};
    CHECK(guest_send(g, TCP_ACK | TCP_PSH, req, strlen(req)));
    guest_receive(g, true);
    return CHECK(g->rx_len > start) && parse_answer(g->rx + start, g->rx_len - start, a);
}

/* Close from the guest's side and expect MMDS to finish the close. */
static void guest_close(struct guest *g)
{
    struct mmds_stack_stats st;
    struct seg s;

    CHECK(guest_send(g, TCP_FIN | TCP_ACK, NULL, 0));
    if (CHECK(next_seg(g, &s))) {
        CHECK_EQ_U64(s.flags, TCP_FIN | TCP_ACK);
        CHECK_EQ_U64(s.ack, g->snd_nxt);
        g->rcv_nxt = s.seq + 1;
    }
    CHECK(guest_send(g, TCP_ACK, NULL, 0));
    CHECK(!mmds_stack_has_frame(g->stack));
    /* The connection is gone: another ACK on it is answered with a reset. */
    guest_send(g, TCP_ACK, NULL, 0);
    if (CHECK(next_seg(g, &s)))
        CHECK_EQ_U64(s.flags, TCP_RST);
    mmds_stack_get_stats(g->stack, &st);
    CHECK(st.tcp.resets_sent >= 1);
}

static void guest_destroy(struct guest *g)
{
    mmds_stack_destroy(g->stack);
}

#define GET_USER_DATA "GET /latest/user-data HTTP/1.1\r\n\r\n"

/* --- the network stack --------------------------------------------------------------------- */

TEST(stack_answers_arp)
{
    struct mmds_store *s = new_store(MMDS_DEFAULT_SIZE_LIMIT, sample_doc);
    uint8_t f[64], out[MMDS_FRAME_MAX];
    struct guest g;
    size_t n;

    REQUIRE(s);
    guest_init(&g, s, 40000);
    REQUIRE(g.stack);
    CHECK(!mmds_stack_has_frame(g.stack));
    /* Someone else's address: not MMDS's. */
    n = build_arp(f, 1, 0x0a000001);
    CHECK(!mmds_stack_may_take(g.stack, f, n));
    CHECK(!mmds_stack_detour(g.stack, f, n));
    /* A reply (not a request) for the MMDS address goes on too, as in Firecracker. */
    n = build_arp(f, 2, MMDS_IP);
    CHECK(!mmds_stack_detour(g.stack, f, n));
    CHECK(!mmds_stack_detour(g.stack, f, 30)); /* truncated */

    n = build_arp(f, 1, MMDS_IP);
    CHECK(mmds_stack_may_take(g.stack, f, n));
    CHECK(mmds_stack_detour(g.stack, f, n));
    CHECK(mmds_stack_has_frame(g.stack));
    CHECK_EQ_U64(mmds_stack_next_frame(g.stack, out, 41), 0); /* too small: kept */
    n = mmds_stack_next_frame(g.stack, out, sizeof(out));
    REQUIRE(n == 42);
    CHECK_MEM_EQ(out, guest_mac, 6);
    CHECK_MEM_EQ(out + 6, mmds_mac, 6);
    CHECK_EQ_U64(rd16(out + 12), 0x0806);
    CHECK_EQ_U64(rd16(out + 14 + 6), 2); /* reply */
    CHECK_MEM_EQ(out + 14 + 8, mmds_mac, 6);
    CHECK_EQ_U64(rd32(out + 14 + 14), MMDS_IP);
    CHECK_MEM_EQ(out + 14 + 18, guest_mac, 6);
    CHECK_EQ_U64(rd32(out + 14 + 24), GUEST_IP);
    CHECK(!mmds_stack_has_frame(g.stack));

    /* A configured address replaces the default one. */
    struct mmds_config cfg = {.version = MMDS_V1, .ipv4 = 0xa9feaa02};
    REQUIRE(mmds_store_set_config(s, &cfg, NULL) == 0);
    n = build_arp(f, 1, MMDS_IP);
    CHECK(!mmds_stack_detour(g.stack, f, n));
    n = build_arp(f, 1, 0xa9feaa02);
    CHECK(mmds_stack_detour(g.stack, f, n));
    n = mmds_stack_next_frame(g.stack, out, sizeof(out));
    CHECK_EQ_U64(rd32(out + 14 + 14), 0xa9feaa02);
    guest_destroy(&g);
    mmds_store_destroy(s);
}

TEST(stack_lets_other_frames_pass_and_drops_non_tcp)
{
    struct mmds_store *s = new_store(MMDS_DEFAULT_SIZE_LIMIT, sample_doc);
    struct out_seg o = {
        .src_ip = GUEST_IP, .dst_ip = 0x08080808, .src_port = 1, .dst_port = 80, .flags = TCP_SYN};
    struct mmds_stack_stats st;
    uint8_t f[128];
    struct guest g;
    size_t n;

    REQUIRE(s);
    guest_init(&g, s, 40000);
    REQUIRE(g.stack);
    n = build_tcp(f, &o); /* to 8.8.8.8 */
    CHECK(!mmds_stack_may_take(g.stack, f, n));
    CHECK(!mmds_stack_detour(g.stack, f, n));
    CHECK(!mmds_stack_may_take(g.stack, f, 10)); /* shorter than an Ethernet header */
    o.dst_ip = MMDS_IP;
    n = build_tcp(f, &o);
    wr16(f + 12, 0x86dd); /* IPv6: not MMDS's */
    CHECK(!mmds_stack_may_take(g.stack, f, n));
    wr16(f + 12, 0x8100); /* 802.1Q */
    CHECK(!mmds_stack_detour(g.stack, f, n));
    wr16(f + 12, 0x0800);
    f[14] = 0x65; /* IPv6 version in an IPv4 EtherType: malformed, so it goes on */
    CHECK(!mmds_stack_detour(g.stack, f, n));
    f[14] = 0x45;
    wr16(f + 16, 2000); /* total length past the frame */
    CHECK(!mmds_stack_detour(g.stack, f, n));
    wr16(f + 16, (uint32_t)(n - 14));
    /* ICMP and UDP to MMDS are consumed and dropped; so is a fragment and a short TCP header. */
    f[14 + 9] = 1;
    CHECK(mmds_stack_detour(g.stack, f, n));
    f[14 + 9] = 17;
    CHECK(mmds_stack_detour(g.stack, f, n));
    f[14 + 9] = 6;
    wr16(f + 14 + 6, 0x2000); /* more fragments */
    CHECK(mmds_stack_detour(g.stack, f, n));
    wr16(f + 14 + 6, 0);
    f[34 + 12] = 0xf0; /* data offset 60 bytes, past the segment */
    CHECK(mmds_stack_detour(g.stack, f, n));
    CHECK(!mmds_stack_has_frame(g.stack));
    mmds_stack_get_stats(g.stack, &st);
    CHECK_EQ_U64(st.rx_frames, 4);
    CHECK_EQ_U64(st.rx_dropped, 4);
    CHECK_EQ_U64(st.tcp.segments_in, 0);
    guest_destroy(&g);
    mmds_store_destroy(s);
}

TEST(stack_v1_get_over_tcp)
{
    struct mmds_store *s = new_store(MMDS_DEFAULT_SIZE_LIMIT, sample_doc);
    struct answer a;
    struct guest g;

    REQUIRE(s);
    guest_init(&g, s, 40001);
    REQUIRE(g.stack);
    REQUIRE(guest_connect(&g, 1460));
    CHECK_EQ_U64(g.mmds_window, MMDS_REQUEST_MAX);
    if (guest_http(&g, "GET /latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n", &a)) {
        CHECK_EQ_I64(a.status, 200);
        CHECK_STR_EQ(a.body, "ami-id\nnetwork/\nreservation-id");
    }
    answer_free(&a);
    /* Keep-alive: a second request on the same connection. */
    if (guest_http(&g, "GET /latest/user-data HTTP/1.1\r\nAccept: application/json\r\n\r\n", &a)) {
        CHECK_EQ_I64(a.status, 200);
        CHECK_STR_EQ(a.body, "\"hello\"");
    }
    answer_free(&a);
    CHECK(!g.got_fin);
    guest_close(&g);
    guest_destroy(&g);
    mmds_store_destroy(s);
}

TEST(stack_v2_token_flow)
{
    struct mmds_store *s = new_store(MMDS_DEFAULT_SIZE_LIMIT, sample_doc);
    char req[256], token[MMDS_TOKEN_TEXT_MAX + 1] = "";
    struct answer a;
    struct guest g;

    REQUIRE(s);
    set_version(s, MMDS_V2, false);
    fake_now = 9000000;
    guest_init(&g, s, 40002);
    REQUIRE(g.stack);
    REQUIRE(guest_connect(&g, 1460));
    if (guest_http(&g, "GET /latest/meta-data/ami-id HTTP/1.1\r\n\r\n", &a))
        CHECK_EQ_I64(a.status, 401);
    answer_free(&a);
    if (guest_http(&g, "PUT /latest/api/token HTTP/1.1\r\nX-metadata-token-ttl-seconds: 5\r\n\r\n",
                   &a) &&
        CHECK_EQ_I64(a.status, 200))
        snprintf(token, sizeof(token), "%s", a.body);
    answer_free(&a);
    snprintf(req, sizeof(req),
             "GET /latest/meta-data/ami-id HTTP/1.1\r\nX-metadata-token: %s\r\n\r\n", token);
    if (guest_http(&g, req, &a)) {
        CHECK_EQ_I64(a.status, 200);
        CHECK_STR_EQ(a.body, "ami-87654321");
    }
    answer_free(&a);
    fake_now += 5000;
    if (guest_http(&g, req, &a))
        CHECK_EQ_I64(a.status, 401); /* expired */
    answer_free(&a);
    guest_close(&g);
    guest_destroy(&g);
    mmds_store_destroy(s);
}

TEST(stack_segments_by_mss_and_window)
{
    struct mmds_store *s = new_store(200000, NULL);
    static char doc[70000];
    size_t n;
    struct guest g;
    struct seg sg;
    unsigned int sent;
    struct answer a;

    REQUIRE(s);
    n = (size_t)snprintf(doc, sizeof(doc), "{\"big\":\"");
    for (size_t i = 0; i < 50000; i++)
        doc[n++] = (char)('a' + i % 26);
    n += (size_t)snprintf(doc + n, sizeof(doc) - n, "\"}");
    REQUIRE(mmds_store_put(s, doc, n, NULL) == 0);
    guest_init(&g, s, 40003);
    REQUIRE(g.stack);
    REQUIRE(guest_connect(&g, 0)); /* no MSS option: 536 */
    /* The guest's window is 3000 bytes: MMDS stops there until the guest acknowledges. */
    g.window = 3000;
    CHECK(guest_send(&g, TCP_ACK | TCP_PSH, "GET /big HTTP/1.1\r\n\r\n", 21));
    sent = 0;
    while (next_seg(&g, &sg)) {
        CHECK(sg.len <= 536);
        CHECK_EQ_U64(sg.seq, g.rcv_nxt + sent);
        sent += (unsigned int)sg.len;
    }
    CHECK_EQ_U64(sent, 3000);
    /* Ack it all with a big window, then read the rest ACKing as we go. */
    g.window = 65535;
    g.rcv_nxt += sent;
    guest_send(&g, TCP_ACK, NULL, 0);
    guest_receive(&g, true);
    CHECK_EQ_U64(g.max_payload, 536);
    /* The first 3000 bytes were taken outside g.rx: parse what remains after them. */
    (void)a;
    CHECK(g.rx_len > 50000 - 3000);
    CHECK_EQ_U64(g.rx[g.rx_len - 1], 'a' + (50000 - 1) % 26);

    /* A small buffer from the device gets a shorter segment. */
    CHECK(guest_send(&g, TCP_ACK | TCP_PSH, "GET /big HTTP/1.1\r\n\r\n", 21));
    n = mmds_stack_next_frame(g.stack, frame_buf, 54 + 100);
    CHECK_EQ_U64(n, 54 + 100);
    CHECK_EQ_U64(mmds_stack_next_frame(g.stack, frame_buf, 54), 0); /* no room for data */
    guest_destroy(&g);
    mmds_store_destroy(s);
}

TEST(tcp_repeated_syn_gets_the_same_synack)
{
    struct mmds_store *s = new_store(MMDS_DEFAULT_SIZE_LIMIT, sample_doc);
    struct seg s1, s2;
    struct answer a;
    struct guest g;
    uint32_t isn;

    REQUIRE(s);
    guest_init(&g, s, 40004);
    REQUIRE(g.stack);
    isn = g.snd_nxt;
    CHECK(guest_send(&g, TCP_SYN, NULL, 0));
    CHECK(guest_send_at(&g, isn, TCP_SYN, NULL, 0)); /* the guest sends its SYN again */
    REQUIRE(next_seg(&g, &s1));
    CHECK(!next_seg(&g, &s2));                       /* one SYN-ACK pending, not two */
    CHECK(guest_send_at(&g, isn, TCP_SYN, NULL, 0)); /* and again, after our SYN-ACK */
    REQUIRE(next_seg(&g, &s2));
    CHECK_EQ_U64(s2.flags, TCP_SYN | TCP_ACK);
    CHECK_EQ_U64(s1.seq, s2.seq);
    CHECK_EQ_U64(s2.ack, isn + 1);
    g.rcv_nxt = s1.seq + 1;
    guest_send(&g, TCP_ACK, NULL, 0);
    /* Once established, a repeated SYN only gets an ACK; the connection carries on. */
    CHECK(guest_send_at(&g, isn, TCP_SYN, NULL, 0));
    REQUIRE(next_seg(&g, &s2));
    CHECK_EQ_U64(s2.flags, TCP_ACK);
    if (guest_http(&g, "GET /latest/user-data HTTP/1.1\r\n\r\n", &a))
        CHECK_STR_EQ(a.body, "hello");
    answer_free(&a);
    /* A SYN with a new sequence number from the same port is a new connection. */
    g.snd_nxt += 100000;
    g.rx_len = 0;
    REQUIRE(guest_connect(&g, 1460));
    if (guest_http(&g, "GET /latest/user-data HTTP/1.1\r\n\r\n", &a))
        CHECK_STR_EQ(a.body, "hello");
    answer_free(&a);
    guest_destroy(&g);
    mmds_store_destroy(s);
}

TEST(tcp_out_of_order_and_overlapping_data)
{
    struct mmds_store *s = new_store(MMDS_DEFAULT_SIZE_LIMIT, sample_doc);
    const char *req = "GET /latest/user-data HTTP/1.1\r\n\r\n";
    size_t len = strlen(req);
    struct answer a;
    struct guest g;
    struct seg sg;
    uint32_t start;

    REQUIRE(s);
    guest_init(&g, s, 40005);
    REQUIRE(g.stack);
    REQUIRE(guest_connect(&g, 1460));
    start = g.snd_nxt;
    /* The second half first: dropped, and answered with a duplicate ACK of the start. */
    CHECK(guest_send_at(&g, start + 10, TCP_ACK, req + 10, len - 10));
    REQUIRE(next_seg(&g, &sg));
    CHECK_EQ_U64(sg.flags, TCP_ACK);
    CHECK_EQ_U64(sg.ack, start);
    CHECK_EQ_U64(sg.len, 0);
    /* The first 12 bytes, then everything from byte 5 (an overlap the stack trims). */
    CHECK(guest_send_at(&g, start, TCP_ACK, req, 12));
    REQUIRE(next_seg(&g, &sg));
    CHECK_EQ_U64(sg.ack, start + 12);
    CHECK(guest_send_at(&g, start + 5, TCP_ACK, req + 5, len - 5));
    g.snd_nxt = start + (uint32_t)len;
    guest_receive(&g, true);
    if (CHECK(parse_answer(g.rx, g.rx_len, &a)))
        CHECK_STR_EQ(a.body, "hello");
    answer_free(&a);
    /* An old segment again: acknowledged, not served twice. */
    CHECK(guest_send_at(&g, start, TCP_ACK, req, len));
    REQUIRE(next_seg(&g, &sg));
    CHECK_EQ_U64(sg.len, 0);
    CHECK_EQ_U64(sg.ack, (uint32_t)(start + len));
    CHECK(!mmds_stack_has_frame(g.stack));
    guest_close(&g);
    guest_destroy(&g);
    mmds_store_destroy(s);
}

TEST(tcp_oversized_request_and_window)
{
    struct mmds_store *s = new_store(MMDS_DEFAULT_SIZE_LIMIT, sample_doc);
    static char big[4000];
    struct answer a;
    struct guest g;
    struct seg sg;
    uint32_t start;

    REQUIRE(s);
    guest_init(&g, s, 40006);
    REQUIRE(g.stack);
    REQUIRE(guest_connect(&g, 1460));
    /* 4000 bytes without an empty line: only the window's worth (2499) is taken. */
    memset(big, 'x', sizeof(big));
    memcpy(big, "GET /", 5);
    start = g.snd_nxt;
    CHECK(guest_send_at(&g, start, TCP_ACK, big, sizeof(big)));
    /* The buffer is full without a request in it: 431, and MMDS closes. */
    guest_receive(&g, false);
    if (CHECK(parse_answer(g.rx, g.rx_len, &a)))
        CHECK_EQ_I64(a.status, 431);
    answer_free(&a);
    CHECK(g.got_fin);
    /* The rest of the bytes are acknowledged and dropped. */
    CHECK(guest_send_at(&g, start + 2499, TCP_ACK, big + 2499, sizeof(big) - 2499));
    REQUIRE(next_seg(&g, &sg));
    CHECK_EQ_U64(sg.ack, (uint32_t)(start + sizeof(big)));
    CHECK_EQ_U64(sg.len, 0);
    g.snd_nxt = start + sizeof(big);
    /* MMDS's FIN went out with the reply: the guest's FIN gets a plain ACK, then it is over. */
    CHECK(guest_send(&g, TCP_FIN | TCP_ACK, NULL, 0));
    REQUIRE(next_seg(&g, &sg));
    CHECK_EQ_U64(sg.flags, TCP_ACK);
    CHECK(!mmds_stack_has_frame(g.stack));
    CHECK(guest_send(&g, TCP_ACK, NULL, 0));
    REQUIRE(next_seg(&g, &sg));
    CHECK_EQ_U64(sg.flags, TCP_RST);
    guest_destroy(&g);
    mmds_store_destroy(s);
}

TEST(tcp_reset_handling)
{
    struct mmds_store *s = new_store(MMDS_DEFAULT_SIZE_LIMIT, sample_doc);
    struct mmds_stack_stats st;
    struct guest g;
    struct seg sg;

    REQUIRE(s);
    guest_init(&g, s, 40007);
    REQUIRE(g.stack);
    /* A segment for no connection is reset; with an ACK, the RST takes its number. */
    g.rcv_nxt = 12345;
    CHECK(guest_send(&g, TCP_ACK, "x", 1));
    REQUIRE(next_seg(&g, &sg));
    CHECK_EQ_U64(sg.flags, TCP_RST);
    CHECK_EQ_U64(sg.seq, 12345);
    CHECK(guest_send(&g, TCP_FIN, NULL, 0)); /* without ACK: RST|ACK past the segment */
    REQUIRE(next_seg(&g, &sg));
    CHECK_EQ_U64(sg.flags, TCP_RST | TCP_ACK);
    CHECK_EQ_U64(sg.ack, g.snd_nxt);
    CHECK(guest_send(&g, TCP_RST, NULL, 0)); /* a RST is never answered */
    CHECK(!mmds_stack_has_frame(g.stack));

    /* Another port: connection refused at once. */
    struct out_seg o = {.src_ip = GUEST_IP,
                        .dst_ip = MMDS_IP,
                        .src_port = 40007,
                        .dst_port = 443,
                        .seq = 77,
                        .flags = TCP_SYN,
                        .window = 1000};
    uint8_t f[128];
    size_t n = build_tcp(f, &o);
    CHECK(mmds_stack_detour(g.stack, f, n));
    REQUIRE(next_seg(&g, &sg));
    CHECK_EQ_U64(sg.flags, TCP_RST | TCP_ACK);
    CHECK_EQ_U64(sg.src_port, 443);
    CHECK_EQ_U64(sg.ack, 78);

    /* An out-of-window RST is ignored; an in-window one drops the connection silently. */
    REQUIRE(guest_connect(&g, 1460));
    CHECK(guest_send_at(&g, g.snd_nxt + 5000, TCP_RST, NULL, 0));
    CHECK(!mmds_stack_has_frame(g.stack));
    CHECK(guest_send(&g, TCP_ACK | TCP_PSH, "GET /", 5)); /* still there: acknowledged */
    REQUIRE(next_seg(&g, &sg));
    CHECK_EQ_U64(sg.ack, g.snd_nxt);
    CHECK(guest_send_at(&g, g.snd_nxt, TCP_RST, NULL, 0));
    CHECK(!mmds_stack_has_frame(g.stack));
    CHECK(guest_send(&g, TCP_ACK, "x", 1));
    REQUIRE(next_seg(&g, &sg));
    CHECK_EQ_U64(sg.flags, TCP_RST); /* gone */
    /* A handshake ACK with the wrong number is reset, the half-open connection stays. */
    g.snd_nxt += 1000;
    CHECK(guest_send(&g, TCP_SYN, NULL, 0));
    REQUIRE(next_seg(&g, &sg));
    g.rcv_nxt = sg.seq + 7;
    CHECK(guest_send(&g, TCP_ACK, NULL, 0));
    REQUIRE(next_seg(&g, &sg));
    CHECK_EQ_U64(sg.flags, TCP_RST);
    CHECK_EQ_U64(sg.seq, g.rcv_nxt);
    mmds_stack_get_stats(g.stack, &st);
    CHECK_EQ_U64(st.tcp.connections, 2);
    guest_destroy(&g);
    mmds_store_destroy(s);
}

TEST(tcp_retransmits_on_timeout_and_duplicate_ack)
{
    struct mmds_store *s = new_store(MMDS_DEFAULT_SIZE_LIMIT, sample_doc);
    struct mmds_stack_stats st;
    struct guest g;
    struct seg sg, first;
    struct answer a;

    REQUIRE(s);
    fake_now = 20000000;
    guest_init(&g, s, 40008);
    REQUIRE(g.stack);
    REQUIRE(guest_connect(&g, 1460));
    CHECK_EQ_I64(mmds_stack_timeout_ms(g.stack), -1);
    CHECK(guest_send(&g, TCP_ACK | TCP_PSH, GET_USER_DATA, strlen(GET_USER_DATA)));
    REQUIRE(next_seg(&g, &first)); /* the guest "loses" the reply */
    CHECK(first.len > 0);
    CHECK(!mmds_stack_has_frame(g.stack));
    CHECK_EQ_I64(mmds_stack_timeout_ms(g.stack), 200);
    fake_now += 199;
    CHECK(!mmds_stack_has_frame(g.stack));
    fake_now += 1;
    CHECK_EQ_I64(mmds_stack_timeout_ms(g.stack), 0);
    REQUIRE(next_seg(&g, &sg));
    CHECK_EQ_U64(sg.seq, first.seq);
    CHECK_EQ_U64(sg.len, first.len);
    CHECK_EQ_I64(mmds_stack_timeout_ms(g.stack), 400); /* backed off */
    /* A duplicate ACK (the guest saw a gap) sends the data again at once, once. */
    guest_send(&g, TCP_ACK, NULL, 0);
    REQUIRE(next_seg(&g, &sg));
    CHECK_EQ_U64(sg.seq, first.seq);
    guest_send(&g, TCP_ACK, NULL, 0);
    CHECK(!mmds_stack_has_frame(g.stack));
    /* Now the guest takes it. */
    memcpy(g.rx, sg.payload, sg.len);
    g.rx_len = sg.len;
    g.rcv_nxt += (uint32_t)sg.len;
    guest_send(&g, TCP_ACK, NULL, 0);
    CHECK_EQ_I64(mmds_stack_timeout_ms(g.stack), -1);
    if (CHECK(parse_answer(g.rx, g.rx_len, &a)))
        CHECK_STR_EQ(a.body, "hello");
    answer_free(&a);
    mmds_stack_get_stats(g.stack, &st);
    CHECK_EQ_U64(st.tcp.retransmissions, 2);

    /* A guest that never answers is reset after MMDS_TCP_RETRIES timeouts. */
    CHECK(guest_send(&g, TCP_ACK | TCP_PSH, GET_USER_DATA, strlen(GET_USER_DATA)));
    REQUIRE(next_seg(&g, &first));
    for (int i = 0; i < MMDS_TCP_RETRIES; i++) {
        fake_now += (uint64_t)mmds_stack_timeout_ms(g.stack);
        REQUIRE(next_seg(&g, &sg));
        CHECK_EQ_U64(sg.seq, first.seq);
    }
    fake_now += (uint64_t)mmds_stack_timeout_ms(g.stack);
    REQUIRE(next_seg(&g, &sg));
    CHECK(sg.flags & TCP_RST);
    CHECK(!mmds_stack_has_frame(g.stack));
    CHECK_EQ_I64(mmds_stack_timeout_ms(g.stack), -1);
    guest_destroy(&g);
    mmds_store_destroy(s);
}

TEST(tcp_connection_limit_and_idle_eviction)
{
    struct mmds_store *s = new_store(MMDS_DEFAULT_SIZE_LIMIT, sample_doc);
    struct answer a;
    struct guest g;
    struct seg sg;

    REQUIRE(s);
    fake_now = 30000000;
    guest_init(&g, s, 1000);
    REQUIRE(g.stack);
    for (int i = 0; i < MMDS_TCP_MAX_CONNECTIONS; i++) {
        g.port = (uint16_t)(1000 + i);
        REQUIRE(guest_connect(&g, 1460));
    }
    /* Every slot busy and none idle: the next SYN is refused. */
    g.port = 2000;
    CHECK(guest_send(&g, TCP_SYN, NULL, 0));
    REQUIRE(next_seg(&g, &sg));
    CHECK_EQ_U64(sg.flags, TCP_RST | TCP_ACK);
    /* Ten seconds later the oldest idle one is reset and replaced. */
    fake_now += MMDS_TCP_IDLE_MS;
    g.snd_nxt += 10;
    CHECK(guest_send(&g, TCP_SYN, NULL, 0));
    REQUIRE(next_seg(&g, &sg));
    CHECK_EQ_U64(sg.flags, TCP_RST | TCP_ACK);
    CHECK_EQ_U64(sg.dst_port, 1000);
    REQUIRE(next_seg(&g, &sg));
    CHECK_EQ_U64(sg.flags, TCP_SYN | TCP_ACK);
    g.rcv_nxt = sg.seq + 1;
    guest_send(&g, TCP_ACK, NULL, 0);
    if (guest_http(&g, "GET /latest/user-data HTTP/1.1\r\n\r\n", &a))
        CHECK_STR_EQ(a.body, "hello");
    answer_free(&a);
    guest_destroy(&g);
    mmds_store_destroy(s);
}

TEST(tcp_pipelined_requests_and_server_close)
{
    struct mmds_store *s = new_store(MMDS_DEFAULT_SIZE_LIMIT, sample_doc);
    const char *two = "GET /latest/user-data HTTP/1.1\r\n\r\n"
                      "GET /latest/meta-data/ami-id HTTP/1.1\r\nConnection: close\r\n\r\n";
    struct answer a, b;
    struct guest g;
    struct seg sg;

    REQUIRE(s);
    guest_init(&g, s, 40009);
    REQUIRE(g.stack);
    REQUIRE(guest_connect(&g, 1460));
    CHECK(guest_send(&g, TCP_ACK | TCP_PSH, two, strlen(two)));
    guest_receive(&g, true); /* both replies: the second once the first is acknowledged */
    const char *cl = strstr(g.rx, "Content-Length: ");
    const char *end = strstr(g.rx, "\r\n\r\n");
    size_t first_len = 0;
    if (CHECK(cl && end))
        first_len = (size_t)(end + 4 - g.rx) + strtoul(cl + 16, NULL, 10);
    if (CHECK(first_len > 0 && first_len < g.rx_len) && parse_answer(g.rx, first_len, &a)) {
        CHECK_STR_EQ(a.body, "hello");
        if (parse_answer(g.rx + first_len, g.rx_len - first_len, &b)) {
            CHECK_STR_EQ(b.body, "ami-87654321");
            CHECK_STR_CONTAINS(b.head, "Connection: close");
        }
        answer_free(&b);
    }
    answer_free(&a);
    /* MMDS sent its FIN with the last reply; the guest closes too and the connection ends. */
    CHECK(g.got_fin);
    CHECK(!mmds_stack_has_frame(g.stack));
    CHECK(guest_send(&g, TCP_FIN | TCP_ACK, NULL, 0));
    REQUIRE(next_seg(&g, &sg));
    CHECK_EQ_U64(sg.flags, TCP_ACK);
    CHECK_EQ_U64(sg.ack, g.snd_nxt);
    CHECK(!mmds_stack_has_frame(g.stack));
    CHECK(guest_send(&g, TCP_ACK, NULL, 0));
    REQUIRE(next_seg(&g, &sg));
    CHECK_EQ_U64(sg.flags, TCP_RST); /* forgotten */
    guest_destroy(&g);
    mmds_store_destroy(s);
}

TEST(tcp_guest_half_close_after_request)
{
    struct mmds_store *s = new_store(MMDS_DEFAULT_SIZE_LIMIT, sample_doc);
    struct answer a;
    struct guest g;

    REQUIRE(s);
    guest_init(&g, s, 40010);
    REQUIRE(g.stack);
    REQUIRE(guest_connect(&g, 1460));
    /* Request and FIN in one segment (as "printf ... | nc" does): reply, then close. */
    CHECK(
        guest_send(&g, TCP_ACK | TCP_PSH | TCP_FIN, "GET /latest/user-data HTTP/1.0\r\n\r\n", 34));
    guest_receive(&g, true);
    if (CHECK(parse_answer(g.rx, g.rx_len, &a)))
        CHECK_STR_EQ(a.body, "hello");
    answer_free(&a);
    CHECK(g.got_fin);
    CHECK(!mmds_stack_has_frame(g.stack));
    guest_destroy(&g);
    mmds_store_destroy(s);
}

int main(int argc, char **argv)
{
    return unit_main(argc, argv);
}
