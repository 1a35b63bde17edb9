import Foundation
import TestSupport
import XCTest

/// deploy/: the Kubernetes manifests are checked against the Kubernetes schemas, offline and
/// strictly (an unknown field fails), and the sonde.yaml inside the ConfigMap with sonde itself.
final class DeploymentTests: XCTestCase {
    private let manifests = ["serviceaccount.yaml", "configmap.yaml", "daemonset.yaml"].map { "\(Repository.root)/deploy/kubernetes/\($0)" }

    /// kubernetes-validate's verdict on files: exit status and output.
    private func validate(_ files: [String]) throws -> (status: Int32, output: String) {
        guard (try? ChildProcess.run("/usr/bin/env", ["python3", "-c", "import kubernetes_validate"])) != nil else {
            throw TestEnvironment.missingInstall("kubernetes-validate \(TestEnvironment.setting("KUBERNETES_VALIDATE_VERSION")) (PyPI)")
        }
        let validator = try ChildProcess(
            "/usr/bin/env", ["python3", "-m", "kubernetes_validate", "--strict", "-k", TestEnvironment.setting("KUBERNETES_VERSION")] + files)
        validator.process.waitUntilExit()
        validator.waitForEndOfOutput()
        return (validator.process.terminationStatus, validator.text)
    }

    func testManifestsMatchTheKubernetesSchemas() throws {
        let result = try validate(manifests)
        XCTAssertEqual(result.status, 0, result.output)
        XCTAssertEqual(result.output.split(separator: "\n").filter { $0.hasPrefix("INFO") }.count, 3, result.output)
    }

    func testAWrongFieldIsCaught() throws {
        let directory = try temporaryDirectory()
        let daemonSet = try String(contentsOfFile: manifests[2], encoding: .utf8)
        let broken = "\(directory)/daemonset.yaml"
        try daemonSet.replacingOccurrences(of: "hostPID: true", with: "hostPid: true").write(toFile: broken, atomically: true, encoding: .utf8)
        let result = try validate([broken])
        XCTAssertEqual(result.status, 1, result.output)
        XCTAssertTrue(result.output.contains("hostPid"), result.output)
    }

    /// The config the ConfigMap carries is one sonde accepts.
    func testTheConfigMapHoldsAValidSondeConfig() throws {
        let directory = try temporaryDirectory()
        let config = "\(directory)/sonde.yaml"
        _ = try ChildProcess.run("/usr/bin/env", [
            "python3", "-c", "import sys, yaml; open(sys.argv[2], 'w').write(yaml.safe_load(open(sys.argv[1]))['data']['sonde.yaml'])",
            manifests[1], config,
        ])
        let validate = try runSonde(["config", "validate", config])
        XCTAssertEqual(validate.output, "ok  \(config): 2 service(s): shop-front, shop-back; unmatched processes: ignore\n")
    }
}
