"""Word lists the demo dataset draws from: Indonesian names, places, providers, benefits."""

from __future__ import annotations

FIRST_NAMES = (
    "Adi", "Agus", "Ahmad", "Andi", "Anisa", "Ayu", "Bambang", "Budi", "Cahya", "Dewi",
    "Dimas", "Eka", "Fajar", "Fitri", "Gita", "Hadi", "Hendra", "Indah", "Irfan", "Joko",
    "Kartika", "Lestari", "Made", "Maya", "Nur", "Nyoman", "Putri", "Rina", "Rizky", "Sari",
    "Siti", "Slamet", "Teguh", "Tri", "Wahyu", "Wayan", "Yanti", "Yogi", "Yusuf", "Zahra",
)  # fmt: skip

LAST_NAMES = (
    "Hidayat", "Santoso", "Wijaya", "Saputra", "Kusuma", "Pratama", "Nugroho", "Setiawan",
    "Gunawan", "Siregar", "Nasution", "Harahap", "Lubis", "Simanjuntak", "Wibowo", "Halim",
    "Susanto", "Purnomo", "Rahman", "Hakim", "Utami", "Permana", "Sihombing", "Tanjung",
    "Putra", "Handoko", "Firmansyah", "Kurniawan", "Hartono", "Sembiring",
)  # fmt: skip

# (city, province, postal code prefix, lat, lng)
CITIES = (
    ("Jakarta Selatan", "DKI Jakarta", "12", -6.2615, 106.8106),
    ("Jakarta Pusat", "DKI Jakarta", "10", -6.1865, 106.8342),
    ("Bandung", "Jawa Barat", "40", -6.9175, 107.6191),
    ("Surabaya", "Jawa Timur", "60", -7.2575, 112.7521),
    ("Semarang", "Jawa Tengah", "50", -6.9667, 110.4167),
    ("Yogyakarta", "DI Yogyakarta", "55", -7.7956, 110.3695),
    ("Medan", "Sumatera Utara", "20", 3.5952, 98.6722),
    ("Denpasar", "Bali", "80", -8.6705, 115.2126),
    ("Makassar", "Sulawesi Selatan", "90", -5.1477, 119.4327),
    ("Palembang", "Sumatera Selatan", "30", -2.9761, 104.7754),
)

STREETS = (
    "Jl. Sudirman", "Jl. M.H. Thamrin", "Jl. Gatot Subroto", "Jl. Diponegoro",
    "Jl. Ahmad Yani", "Jl. Merdeka", "Jl. Pahlawan", "Jl. Asia Afrika", "Jl. Gajah Mada",
    "Jl. Hayam Wuruk", "Jl. Veteran", "Jl. Cendrawasih", "Jl. Kenanga", "Jl. Melati",
)  # fmt: skip

EMAIL_DOMAINS = ("gmail.com", "yahoo.co.id", "outlook.com", "mail.id")

RELATIONSHIPS = ("spouse", "child", "child", "child", "parent")

PLANS = (
    # (id, name, tier, annual limit in IDR)
    ("PLN-BASIC", "Basic", 1, 50_000_000),
    ("PLN-STANDARD", "Standard", 2, 150_000_000),
    ("PLN-PREMIUM", "Premium", 3, 500_000_000),
)

PROVIDER_PREFIXES = {
    "hospital": ("RS", "Rumah Sakit", "RSU", "RS Mitra", "RS Siloam", "RS Hermina"),
    "clinic": ("Klinik", "Klinik Pratama", "Klinik Utama", "Klinik Medika"),
    "pharmacy": ("Apotek", "Apotek Kimia", "Apotek Sehat", "Apotek K-24"),
}

PROVIDER_NAMES = (
    "Harapan", "Sejahtera", "Medika", "Husada", "Bunda", "Permata", "Sentosa", "Pelita",
    "Cahaya", "Mulia", "Kasih", "Santo Yusuf", "Bakti", "Husada Utama", "Bina Sehat",
)  # fmt: skip

SPECIALTIES = {
    "hospital": (
        "cardiology", "orthopedics", "pediatrics", "obstetrics", "neurology", "oncology",
        "internal_medicine", "emergency", "radiology", "surgery",
    ),
    "clinic": ("general_practice", "dental", "dermatology", "ophthalmology", "pediatrics"),
    "pharmacy": ("prescription", "compounding", "vaccination"),
}  # fmt: skip

# Benefit categories: (code, name, key in the policy's coverage block)
CATEGORIES = (
    ("CONS", "Consultation", "outpatient"),
    ("LAB", "Laboratory", "outpatient"),
    ("RAD", "Radiology", "outpatient"),
    ("PHA", "Pharmacy", "outpatient"),
    ("DEN", "Dental", "dental"),
    ("OPT", "Optical", "optical"),
    ("INP", "Inpatient", "inpatient"),
    ("MAT", "Maternity", "maternity"),
)

# Benefit codes: code -> (description, min amount, max amount) in IDR
BENEFIT_CODES = {
    "CONS-GP": ("General practitioner consultation", 150_000, 400_000),
    "CONS-SP": ("Specialist consultation", 300_000, 900_000),
    "LAB-BLD": ("Complete blood count", 120_000, 600_000),
    "LAB-URN": ("Urinalysis", 80_000, 250_000),
    "RAD-XRY": ("Chest X-ray", 200_000, 650_000),
    "RAD-USG": ("Abdominal ultrasound", 400_000, 1_200_000),
    "RAD-MRI": ("MRI scan", 2_500_000, 6_000_000),
    "PHA-GEN": ("Generic prescription drugs", 40_000, 450_000),
    "PHA-BRD": ("Branded prescription drugs", 150_000, 1_500_000),
    "DEN-SCL": ("Dental scaling", 250_000, 700_000),
    "DEN-FIL": ("Dental filling", 300_000, 1_000_000),
    "OPT-LNS": ("Prescription lenses", 400_000, 2_000_000),
    "INP-ROOM": ("Inpatient room per night", 750_000, 3_500_000),
    "INP-SURG": ("Surgical procedure", 8_000_000, 45_000_000),
    "MAT-ANC": ("Antenatal check-up", 250_000, 800_000),
}

CLAIM_STATUSES = ("submitted", "processing", "approved", "rejected", "paid")

HISTORY_NOTES = {
    "submitted": ("Claim received via mobile app", "Claim submitted by provider", ""),
    "processing": ("Documents under review", "Assigned to claims assessor", ""),
    "approved": ("Approved according to policy coverage", "Partially approved", ""),
    "rejected": (
        "Service not covered by plan",
        "Missing supporting documents",
        "Annual limit exceeded",
    ),
    "paid": ("Transferred to provider account", "Reimbursed to member bank account"),
}

DOCUMENT_KINDS = ("invoice", "prescription", "medical_report", "lab_result", "receipt")

NOTIFICATION_KINDS = ("claim_update", "payment", "reminder", "promo")

NOTIFICATION_TEXT = {
    "claim_update": (
        ("Claim {claim} updated", "Your claim {claim} is now {status}."),
        ("Claim {claim} needs attention", "Please upload the missing documents for {claim}."),
    ),
    "payment": (
        ("Payment sent", "Rp {amount} for claim {claim} has been transferred."),
        ("Reimbursement complete", "We reimbursed Rp {amount} to your bank account."),
    ),
    "reminder": (
        ("Annual check-up", "Your free annual health check-up is available until {date}."),
        ("Policy renewal", "Your policy renews on {date}. Review your coverage in the app."),
    ),
    "promo": (
        ("Vaccination week", "Get a flu vaccine at partner clinics with 0% copay."),
        ("Dental month", "Scaling at partner dental clinics is fully covered this month."),
    ),
}

TERMS_SUBJECTS = (
    "The Insurer", "The Policyholder", "The Insured Member", "Each Dependent",
    "The Participating Provider", "The Claims Assessor", "This Policy",
)  # fmt: skip

TERMS_VERBS = (
    "shall reimburse", "shall not be liable for", "agrees to disclose", "may request",
    "shall cover", "reserves the right to review", "must obtain prior approval for",
)  # fmt: skip

TERMS_OBJECTS = (
    "reasonable and customary charges for medically necessary treatment",
    "any pre-existing condition declared at enrolment",
    "inpatient room and board up to the daily limit stated in the schedule of benefits",
    "outpatient consultations with general practitioners and specialists",
    "prescription drugs dispensed by a participating pharmacy",
    "diagnostic laboratory and radiology examinations",
    "emergency treatment received within seventy-two hours of an accident",
    "cosmetic procedures not arising from an accident or illness",
    "all supporting documents within thirty days of the date of service",
)

TERMS_QUALIFIERS = (
    "subject to the copayment stated in the schedule of benefits",
    "provided that the policy is in force on the date of service",
    "within the territory of the Republic of Indonesia",
    "after the applicable waiting period has elapsed",
    "unless otherwise agreed in writing by the Insurer",
    "in accordance with the prevailing laws and regulations of OJK",
)
