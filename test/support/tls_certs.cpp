#include "support/tls_certs.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <stdlib.h>  // mkdtemp

#include <cstdint>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <system_error>

namespace evdispatch::test {

namespace {

struct pkey_deleter {
    void operator()(EVP_PKEY* p) const noexcept { EVP_PKEY_free(p); }
};
struct x509_deleter {
    void operator()(X509* p) const noexcept { X509_free(p); }
};
struct bio_deleter {
    void operator()(BIO* p) const noexcept { BIO_free(p); }
};
using pkey_ptr = std::unique_ptr<EVP_PKEY, pkey_deleter>;
using x509_ptr = std::unique_ptr<X509, x509_deleter>;
using bio_ptr = std::unique_ptr<BIO, bio_deleter>;

[[noreturn]] void fail(const std::string& what) {
    std::string msg = "tls_certs: " + what;
    unsigned long e = ERR_get_error();
    if (e != 0) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        msg += ": ";
        msg += buf;
    }
    ERR_clear_error();
    throw std::runtime_error(msg);
}

void check(int ok, const char* what) {
    if (ok <= 0)
        fail(what);
}

pkey_ptr make_key() {
    pkey_ptr k(EVP_EC_gen("P-256"));
    if (!k)
        fail("EC P-256 key generation failed");
    return k;
}

void add_ext(X509* x, X509V3_CTX* ctx, int nid, const char* value) {
    X509_EXTENSION* e = X509V3_EXT_conf_nid(nullptr, ctx, nid, value);
    if (e == nullptr)
        fail(std::string("cannot make extension ") + OBJ_nid2sn(nid) + "=" + value);
    int ok = X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    check(ok, "X509_add_ext");
}

struct cert_spec {
    const char* common_name;
    bool is_ca = false;
    const char* san = nullptr;       // subjectAltName, e.g. "DNS:localhost,IP:127.0.0.1"
    long not_before = -3600;         // seconds from now
    long not_after = 7 * 24 * 3600;  // seconds from now
};

// Self-signed when issuer is null (then issuer_key is ignored and `key` signs).
x509_ptr make_cert(const cert_spec& spec, EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key) {
    x509_ptr x(X509_new());
    if (!x)
        fail("X509_new");
    check(X509_set_version(x.get(), X509_VERSION_3), "X509_set_version");
    std::uint64_t serial = 0;
    check(RAND_bytes(reinterpret_cast<unsigned char*>(&serial), sizeof serial), "RAND_bytes");
    serial &= 0x7fffffffffffffffULL;
    serial |= 1;  // positive and non-zero
    check(ASN1_INTEGER_set_uint64(X509_get_serialNumber(x.get()), serial), "serial");
    if (X509_gmtime_adj(X509_getm_notBefore(x.get()), spec.not_before) == nullptr ||
        X509_gmtime_adj(X509_getm_notAfter(x.get()), spec.not_after) == nullptr)
        fail("validity");
    X509_NAME* name = X509_get_subject_name(x.get());
    check(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                     reinterpret_cast<const unsigned char*>("evdispatch tests"), -1,
                                     -1, 0),
          "subject O");
    check(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                     reinterpret_cast<const unsigned char*>(spec.common_name), -1,
                                     -1, 0),
          "subject CN");
    check(X509_set_issuer_name(x.get(), issuer ? X509_get_subject_name(issuer) : name),
          "issuer name");
    check(X509_set_pubkey(x.get(), key), "X509_set_pubkey");

    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer ? issuer : x.get(), x.get(), nullptr, nullptr, 0);
    add_ext(x.get(), &ctx, NID_basic_constraints,
            spec.is_ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
    add_ext(x.get(), &ctx, NID_key_usage,
            spec.is_ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
    add_ext(x.get(), &ctx, NID_subject_key_identifier, "hash");
    if (issuer != nullptr)
        add_ext(x.get(), &ctx, NID_authority_key_identifier, "keyid:always");
    if (!spec.is_ca)
        add_ext(x.get(), &ctx, NID_ext_key_usage, "serverAuth");
    if (spec.san != nullptr)
        add_ext(x.get(), &ctx, NID_subject_alt_name, spec.san);

    if (X509_sign(x.get(), issuer ? issuer_key : key, EVP_sha256()) <= 0)
        fail("X509_sign");
    return x;
}

void write_cert(const std::string& path, X509* x) {
    bio_ptr b(BIO_new_file(path.c_str(), "w"));
    if (!b)
        fail("cannot create " + path);
    check(PEM_write_bio_X509(b.get(), x), "PEM_write_bio_X509");
}

void write_key(const std::string& path, EVP_PKEY* k) {
    bio_ptr b(BIO_new_file(path.c_str(), "w"));
    if (!b)
        fail("cannot create " + path);
    check(PEM_write_bio_PrivateKey(b.get(), k, nullptr, nullptr, 0, nullptr, nullptr),
          "PEM_write_bio_PrivateKey");
}

constexpr const char* server_san = "DNS:localhost,IP:127.0.0.1,IP:::1";
constexpr long day = 24 * 3600;

}  // namespace

tls_certs::tls_certs() {
    std::string templ = (std::filesystem::temp_directory_path() / "evdispatch-tls-XXXXXX").string();
    if (mkdtemp(templ.data()) == nullptr)
        throw std::system_error(errno, std::generic_category(),
                                "tls_certs: cannot create a directory like " + templ);
    dir_ = templ;
    try {
        auto path = [&](const char* name) { return dir_ + "/" + name; };
        struct issued {
            pkey_ptr key;
            x509_ptr cert;
        };
        auto make = [&](const cert_spec& spec, const issued* by, const char* base,
                        cert_files& out) {
            issued r{make_key(), nullptr};
            r.cert = make_cert(spec, r.key.get(), by ? by->cert.get() : nullptr,
                               by ? by->key.get() : nullptr);
            out.cert = path((std::string(base) + ".crt").c_str());
            out.key = path((std::string(base) + ".key").c_str());
            write_cert(out.cert, r.cert.get());
            write_key(out.key, r.key.get());
            return r;
        };
        issued root = make({"evdispatch test CA", true}, nullptr, "ca", ca);
        make({"localhost", false, server_san}, &root, "server", server);
        make({"wrong.example", false, "DNS:wrong.example"}, &root, "wrong-name", wrong_name);
        make({"localhost", false, server_san, -2 * day, -day}, &root, "expired", expired);
        issued other = make({"evdispatch other CA", true}, nullptr, "other-ca", other_ca);
        make({"localhost", false, server_san}, &other, "untrusted", untrusted);
    } catch (...) {
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
        throw;
    }
}

tls_certs::~tls_certs() {
    std::error_code ec;  // nothing to do about a failure in a destructor
    std::filesystem::remove_all(dir_, ec);
}

const tls_certs& shared_tls_certs() {
    static const tls_certs certs;
    return certs;
}

}  // namespace evdispatch::test
