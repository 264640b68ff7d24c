// The one way a run fails: a kind (the caller's category, as in hexfleet/errors.py) and a reason.
// main() turns it into the single stderr line `hexfleet-runner: <Kind>: <reason>` and exit 1.
#pragma once

#include <stdexcept>
#include <string>

namespace hexfleet {

class Failure : public std::runtime_error {
 public:
  Failure(const std::string& kind, const std::string& reason) : std::runtime_error(kind + ": " + reason) {}
};

// The spec itself is malformed: reported as "invalid spec: <field>: <reason>", like the Python runner.
class InvalidSpec : public std::runtime_error {
 public:
  explicit InvalidSpec(const std::string& reason) : std::runtime_error("invalid spec: " + reason) {}
};

inline Failure invalid_request(const std::string& reason) { return Failure("InvalidRequest", reason); }
inline Failure not_found(const std::string& reason) { return Failure("NotFound", reason); }
inline Failure artifact_mismatch(const std::string& reason) { return Failure("ArtifactMismatch", reason); }
inline Failure model_error(const std::string& reason) { return Failure("ModelError", reason); }

}  // namespace hexfleet
