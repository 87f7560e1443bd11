#pragma once

// Certificates for TLS tests, made at test time with the OpenSSL 3 C API (EC P-256 keys, so
// making the whole set takes a few milliseconds) and written as PEM files into a fresh
// temporary directory that the destructor removes.

#include <string>

namespace evdispatch::test {

/// A certificate (PEM) and its private key (PEM, unencrypted).
struct cert_files {
    std::string cert;
    std::string key;
};

/// The set of certificates TLS tests need. Every server certificate is valid now unless its
/// description says otherwise, and has extendedKeyUsage serverAuth.
class tls_certs {
public:
    /// Generates everything into a new directory under the system temporary directory.
    /// Throws std::runtime_error with OpenSSL's reason if a step fails.
    tls_certs();
    /// Removes the directory and its files.
    ~tls_certs();
    tls_certs(const tls_certs&) = delete;
    tls_certs& operator=(const tls_certs&) = delete;

    /// The directory holding the files.
    const std::string& dir() const noexcept { return dir_; }

    /// The CA clients trust: self-signed, basicConstraints CA:TRUE.
    cert_files ca;
    /// Signed by `ca`; SAN DNS:localhost, IP:127.0.0.1, IP:::1.
    cert_files server;
    /// Signed by `ca`; SAN DNS:wrong.example only.
    cert_files wrong_name;
    /// Signed by `ca`; SAN DNS:localhost, IP:127.0.0.1, IP:::1; notAfter one day ago.
    cert_files expired;
    /// A second, unrelated self-signed CA (not trusted by the tests' clients).
    cert_files other_ca;
    /// Signed by `other_ca`; SAN DNS:localhost, IP:127.0.0.1, IP:::1.
    cert_files untrusted;

private:
    std::string dir_;
};

/// One tls_certs shared by the tests of this process (made on first use, removed at exit).
const tls_certs& shared_tls_certs();

}  // namespace evdispatch::test
