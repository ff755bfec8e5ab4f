"""Sets up ACM PCA in moto for the demo, through botocore: a root CA signed with the
RootCACertificate/V1 template and imported, and a certificate for the CSR given, issued by it.
Prints the CA's ARN; writes the issued certificate and chain to OUT."""

import sys
import time

import botocore.session

endpoint, csr_path, out = sys.argv[1], sys.argv[2], sys.argv[3]
pca = botocore.session.get_session().create_client(
    "acm-pca",
    endpoint_url=endpoint,
    region_name="ap-northeast-2",
    aws_access_key_id="testing",
    aws_secret_access_key="testing",
)


def issue(ca_arn, csr, template):
    arn = pca.issue_certificate(
        CertificateAuthorityArn=ca_arn,
        Csr=csr,
        SigningAlgorithm="SHA256WITHRSA",
        TemplateArn=f"arn:aws:acm-pca:::template/{template}",
        Validity={"Value": 365, "Type": "DAYS"},
    )["CertificateArn"]
    for _ in range(100):
        try:
            return pca.get_certificate(CertificateAuthorityArn=ca_arn, CertificateArn=arn)
        except pca.exceptions.RequestInProgressException:
            time.sleep(0.05)
    raise SystemExit("the certificate was never issued")


ca_arn = pca.create_certificate_authority(
    CertificateAuthorityConfiguration={
        "KeyAlgorithm": "RSA_2048",
        "SigningAlgorithm": "SHA256WITHRSA",
        "Subject": {"CommonName": "demo private CA"},
    },
    CertificateAuthorityType="ROOT",
)["CertificateAuthorityArn"]
ca_csr = pca.get_certificate_authority_csr(CertificateAuthorityArn=ca_arn)["Csr"]
root = issue(ca_arn, ca_csr.encode(), "RootCACertificate/V1")["Certificate"]
pca.import_certificate_authority_certificate(CertificateAuthorityArn=ca_arn, Certificate=root.encode())

leaf = issue(ca_arn, open(csr_path, "rb").read(), "EndEntityCertificate/V1")
with open(out, "w") as file:
    file.write(leaf["Certificate"].strip() + "\n")
    if leaf.get("CertificateChain"):
        file.write(leaf["CertificateChain"].strip() + "\n")
print(ca_arn)
