import Foundation
import Spans
import XCTest

@testable import Exporters

final class OTLPExporterConfigurationTests: XCTestCase {
    private func configurationError(_ environment: [String: String]) -> ExporterConfigurationError? {
        do {
            _ = try OTLPExporterConfiguration.fromEnvironment(environment)
            return nil
        } catch {
            return error
        }
    }

    func testEmptyEnvironmentGivesTheOTLPDefaults() throws {
        let configuration = try OTLPExporterConfiguration.fromEnvironment([:])

        XCTAssertEqual(configuration, OTLPExporterConfiguration())
        XCTAssertEqual(configuration.endpoint.absoluteString, "http://localhost:4318/v1/traces")
        XCTAssertEqual(configuration.timeout, .seconds(10))
    }

    func testEmptyValuesCountAsUnset() throws {
        let configuration = try OTLPExporterConfiguration.fromEnvironment([
            "OTEL_EXPORTER_OTLP_ENDPOINT": "", "OTEL_SERVICE_NAME": " ", "OTEL_EXPORTER_OTLP_HEADERS": "",
        ])

        XCTAssertEqual(configuration, OTLPExporterConfiguration())
    }

    func testTracesEndpointIsUsedAsIsAndWinsOverTheBaseEndpoint() throws {
        let configuration = try OTLPExporterConfiguration.fromEnvironment([
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://collector.example:4318/custom/path",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://ignored:4318",
        ])

        XCTAssertEqual(configuration.endpoint.absoluteString, "https://collector.example:4318/custom/path")
    }

    func testBaseEndpointGetsTheTracesPath() throws {
        let cases = [
            "http://collector:4318": "http://collector:4318/v1/traces",
            "http://collector:4318/": "http://collector:4318/v1/traces",
            "https://otlp.example/prefix//": "https://otlp.example/prefix/v1/traces",
        ]
        for (base, expected) in cases {
            let configuration = try OTLPExporterConfiguration.fromEnvironment(["OTEL_EXPORTER_OTLP_ENDPOINT": base])
            XCTAssertEqual(configuration.endpoint.absoluteString, expected, base)
        }
    }

    func testHeadersAreTrimmedAndPercentDecodedAndTracesHeadersWin() throws {
        let configuration = try OTLPExporterConfiguration.fromEnvironment([
            "OTEL_EXPORTER_OTLP_HEADERS": " api-key = secret%3Dvalue%20x , x-tenant=acme,,",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-tenant=traces-team",
        ])

        XCTAssertEqual(configuration.headers, ["api-key": "secret=value x", "x-tenant": "traces-team"])
    }

    func testTimeoutIsReadInMilliseconds() throws {
        let general = try OTLPExporterConfiguration.fromEnvironment(["OTEL_EXPORTER_OTLP_TIMEOUT": "2500"])
        let specific = try OTLPExporterConfiguration.fromEnvironment([
            "OTEL_EXPORTER_OTLP_TIMEOUT": "2500", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "700",
        ])

        XCTAssertEqual(general.timeout, .milliseconds(2500))
        XCTAssertEqual(specific.timeout, .milliseconds(700))
    }

    func testHTTPProtobufProtocolIsAccepted() throws {
        XCTAssertNoThrow(try OTLPExporterConfiguration.fromEnvironment(["OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"]))
    }

    func testServiceNamePrecedence() throws {
        let spanResource = Resource(attributes: ["service.name": .string("traced-binary"), "process.pid": .int(7)])

        let fromSpan = try OTLPExporterConfiguration.fromEnvironment([:])
        let fromResourceAttributes = try OTLPExporterConfiguration.fromEnvironment([
            "OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attributes,deployment.environment=prod%20eu",
        ])
        let fromServiceName = try OTLPExporterConfiguration.fromEnvironment([
            "OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attributes", "OTEL_SERVICE_NAME": "from-service-name",
        ])

        XCTAssertEqual(fromSpan.exportedResource(for: spanResource).attributes,
                       ["service.name": .string("traced-binary"), "process.pid": .int(7)])
        XCTAssertEqual(fromResourceAttributes.exportedResource(for: spanResource).attributes, [
            "service.name": .string("from-attributes"), "process.pid": .int(7), "deployment.environment": .string("prod eu"),
        ])
        XCTAssertEqual(fromServiceName.exportedResource(for: spanResource).attributes,
                       ["service.name": .string("from-service-name"), "process.pid": .int(7)])
    }

    func testEndpointCountsAsConfiguredOnlyWhenAnEndpointVariableHasAValue() {
        XCTAssertFalse(OTLPExporterConfiguration.isEndpointConfigured(in: [:]))
        XCTAssertFalse(OTLPExporterConfiguration.isEndpointConfigured(in: ["OTEL_EXPORTER_OTLP_ENDPOINT": ""]))
        XCTAssertFalse(OTLPExporterConfiguration.isEndpointConfigured(in: [
            "OTEL_EXPORTER_OTLP_ENDPOINT": " ", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "",
        ]))
        XCTAssertFalse(OTLPExporterConfiguration.isEndpointConfigured(in: ["OTEL_EXPORTER_OTLP_HEADERS": "a=b"]))
        XCTAssertTrue(OTLPExporterConfiguration.isEndpointConfigured(in: ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"]))
        XCTAssertTrue(OTLPExporterConfiguration.isEndpointConfigured(in: [
            "OTEL_EXPORTER_OTLP_ENDPOINT": "", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces",
        ]))
    }

    func testCompressionIsReadAndTheTracesVariableWins() throws {
        XCTAssertEqual(try OTLPExporterConfiguration.fromEnvironment([:]).compression, .none)
        XCTAssertEqual(try OTLPExporterConfiguration.fromEnvironment(["OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"]).compression, .gzip)
        XCTAssertEqual(try OTLPExporterConfiguration.fromEnvironment(["OTEL_EXPORTER_OTLP_COMPRESSION": "GZIP"]).compression, .gzip)
        XCTAssertEqual(
            try OTLPExporterConfiguration.fromEnvironment([
                "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "none",
            ]).compression,
            .none)
    }

    func testPortsOutsideOneTo65535AreRejectedNamingTheVariable() {
        let cases = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:99999", "99999"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:0/", "0"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://[::1]:70000/v1/traces", "70000"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://collector:99999999999999999999999/v1/traces", "99999999999999999999999"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:-1", "-1"),
        ]
        for (variable, url, port) in cases {
            XCTAssertEqual(
                configurationError([variable: url]),
                ExporterConfigurationError(variable, "'\(url)' has port '\(port)'; a port is a number from 1 to 65535"), url)
        }
        XCTAssertNoThrow(try OTLPExporterConfiguration.fromEnvironment(["OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:65535"]))
    }

    /// TLS files: the traces variable wins, a file must be readable, a key needs a certificate.
    func testCertificateFilesAreReadAndChecked() throws {
        let readable = "/etc/hostname"
        let configuration = try OTLPExporterConfiguration.fromEnvironment([
            "OTEL_EXPORTER_OTLP_CERTIFICATE": "/nonexistent/ca.pem", "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE": readable,
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": readable, "OTEL_EXPORTER_OTLP_CLIENT_KEY": readable,
        ])
        XCTAssertEqual([configuration.certificateFile, configuration.clientCertificateFile, configuration.clientKeyFile], [readable, readable, readable])
        XCTAssertEqual(
            configurationError(["OTEL_EXPORTER_OTLP_CERTIFICATE": "/nonexistent/ca.pem"]),
            ExporterConfigurationError("OTEL_EXPORTER_OTLP_CERTIFICATE", "cannot read the file '/nonexistent/ca.pem'"))
        XCTAssertEqual(
            configurationError(["OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY": readable]),
            ExporterConfigurationError(
                "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "a client key needs its certificate: set OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE too"))
    }

    func testUnknownCompressionIsRejected() {
        XCTAssertEqual(
            configurationError(["OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"]),
            ExporterConfigurationError("OTEL_EXPORTER_OTLP_COMPRESSION", "'zstd' is not supported; use gzip or none"))
        XCTAssertEqual(
            configurationError(["OTEL_EXPORTER_OTLP_COMPRESSION": "gzip", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "br"]),
            ExporterConfigurationError("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "'br' is not supported; use gzip or none"))
    }

    func testMalformedValuesNameTheVariableAndTheProblem() {
        let cases: [([String: String], ExporterConfigurationError)] = [
            (["OTEL_EXPORTER_OTLP_HEADERS": "api-key=1,Authorization Bearer abc"],
             ExporterConfigurationError("OTEL_EXPORTER_OTLP_HEADERS", "entry 2 has no '=' (expected key=value,key2=value2)")),
            (["OTEL_EXPORTER_OTLP_TRACES_HEADERS": "=value"],
             ExporterConfigurationError("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "entry 1 has an empty key")),
            (["OTEL_EXPORTER_OTLP_HEADERS": "bad name=value"],
             ExporterConfigurationError("OTEL_EXPORTER_OTLP_HEADERS", "'bad name' is not a valid HTTP header name")),
            (["OTEL_EXPORTER_OTLP_HEADERS": "x-key=a%0Ab"],
             ExporterConfigurationError("OTEL_EXPORTER_OTLP_HEADERS", "the value of 'x-key' contains a line break")),
            (["OTEL_RESOURCE_ATTRIBUTES": "team=%zz"],
             ExporterConfigurationError("OTEL_RESOURCE_ATTRIBUTES", "the value of 'team' is not valid percent-encoding")),
            (["OTEL_EXPORTER_OTLP_ENDPOINT": "localhost:4318"],
             ExporterConfigurationError("OTEL_EXPORTER_OTLP_ENDPOINT", "'localhost:4318' is not an http:// or https:// URL")),
            (["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "not a url"],
             ExporterConfigurationError("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "'not a url' is not an http:// or https:// URL")),
            (["OTEL_EXPORTER_OTLP_TIMEOUT": "5s"],
             ExporterConfigurationError("OTEL_EXPORTER_OTLP_TIMEOUT", "'5s' is not a positive number of milliseconds")),
            (["OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"],
             ExporterConfigurationError("OTEL_EXPORTER_OTLP_PROTOCOL", "'grpc' is not supported; Sonde exports http/protobuf only")),
        ]
        for (environment, expected) in cases {
            XCTAssertEqual(configurationError(environment), expected, "\(environment)")
        }
        XCTAssertEqual(
            configurationError(["OTEL_EXPORTER_OTLP_HEADERS": "oops"])?.description,
            "OTEL_EXPORTER_OTLP_HEADERS: entry 1 has no '=' (expected key=value,key2=value2)")
    }
}
