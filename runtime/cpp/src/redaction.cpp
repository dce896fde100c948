// Credentials out of every URL or pipeline text that is shown or stored: runtime/redaction.py in C++ (the same
// cases hold both: tests/redact_cases.json). A URL's userinfo, and the value of a parameter whose key (percent-
// decoded, ignoring case) is one of kSecretKeys, in a query or a GStreamer pipeline, become ***.
#include <algorithm>
#include <array>
#include <cctype>
#include <regex>
#include <string>

#include "disseg/io.hpp"

namespace disseg {

namespace {

constexpr std::array<const char*, 21> kSecretKeys{"password",
                                                  "passwd",
                                                  "pwd",
                                                  "pass",
                                                  "passphrase",
                                                  "secret",
                                                  "token",
                                                  "access_token",
                                                  "auth",
                                                  "authorization",
                                                  "key",
                                                  "apikey",
                                                  "api_key",
                                                  "api-key",
                                                  "signature",
                                                  "sig",
                                                  "user-pw",
                                                  "proxy-pw",
                                                  "x-amz-signature",
                                                  "x-amz-security-token",
                                                  "x-goog-signature"};
constexpr const char* kMask = "***";
constexpr const char* kAuthorityEnd = "/?#\"' \t\r\n";

std::string percent_decoded_lower(const std::string& key) {
  std::string out;
  for (std::size_t i = 0; i < key.size(); ++i) {
    if (key[i] == '%' && i + 2 < key.size() && std::isxdigit(static_cast<unsigned char>(key[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(key[i + 2]))) {
      out += static_cast<char>(std::stoi(key.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += key[i];
    }
  }
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

bool secret_key(const std::string& key) {
  const std::string k = percent_decoded_lower(key);
  return std::any_of(kSecretKeys.begin(), kSecretKeys.end(), [&](const char* s) { return k == s; });
}

std::string mask_userinfo(const std::string& text) {
  std::string out;
  std::size_t i = 0, found;
  while ((found = text.find("://", i)) != std::string::npos) {
    const std::size_t start = found + 3;
    std::size_t end = text.find_first_of(kAuthorityEnd, start);
    if (end == std::string::npos) end = text.size();
    const std::string authority = text.substr(start, end - start);
    const auto at = authority.rfind('@');
    out += text.substr(i, start - i);
    if (at != std::string::npos) {
      const std::string userinfo = authority.substr(0, at);
      const auto colon = userinfo.find(':');
      out += (colon != std::string::npos ? userinfo.substr(0, colon) + ":" + kMask : std::string(kMask)) +
             authority.substr(at);
    } else {
      out += authority;
    }
    i = end;
  }
  return out + text.substr(i);
}

std::string mask_params(const std::string& text) {
  static const std::regex param(R"((^|[?&;, \t\r\n])([A-Za-z0-9_.%-]+)=("[^"]*"|'[^']*'|[^&#;, \t\r\n"']*))");
  std::string out;
  auto last = text.cbegin();
  for (std::sregex_iterator it(text.begin(), text.end(), param), end; it != end; ++it) {
    const std::smatch& m = *it;
    out.append(last, m[0].first);
    const std::string value = m[3].str();
    const std::string quote = !value.empty() && (value[0] == '"' || value[0] == '\'') ? value.substr(0, 1) : "";
    if (!value.empty() && secret_key(m[2].str()))
      out += m[1].str() + m[2].str() + "=" + quote + kMask + quote;
    else if (!quote.empty())  // a quoted value may hold a query of its own: location="http://cam/a?password=PW"
      out += m[1].str() + m[2].str() + "=" + quote + mask_params(value.substr(1, value.size() - 2)) + quote;
    else
      out += m[0].str();
    last = m[0].second;
  }
  out.append(last, text.cend());
  return out;
}

}  // namespace

std::string redact(const std::string& text) { return mask_params(mask_userinfo(text)); }

}  // namespace disseg
