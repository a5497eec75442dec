package letter

// text is a letter's wording in one language. {url} in a step is the activation address;
// sealed's %s is the agency's name.
type text struct {
	title, number, code, expires, how, scan, sealed string
	steps                                           []string
}

var texts = map[string]text{
	"sq": {
		title:   "Letër aktivizimi e identitetit elektronik (eID)",
		number:  "Numri personal",
		code:    "Kodi juaj i aktivizimit",
		expires: "I vlefshëm deri më",
		how:     "Si ta aktivizoni eID-në tuaj",
		steps: []string{
			"Hapni {url} në shfletues, ose skanoni kodin QR me telefon.",
			"Shkruani numrin tuaj personal dhe kodin e aktivizimit, pastaj zgjidhni një fjalëkalim.",
			"Regjistroni një aplikacion autentikimi ose një çelës kalimi (passkey) si faktor të dytë.",
			"Kodi vlen vetëm një herë. Mos ia tregoni askujt: punonjësit tanë nuk jua kërkojnë kurrë. Nëse e humbni këtë letër, ejani në sportel me dokumentin tuaj të identitetit.",
		},
		scan:   "Skanoni për të hapur faqen e aktivizimit",
		sealed: "Kjo letër është vulosur elektronikisht nga %s (PAdES). Vula mund të verifikohet me çdo lexues PDF që verifikon nënshkrime.",
	},
	"sr": {
		title:   "Pismo za aktivaciju elektronske identifikacije (eID)",
		number:  "Lični broj",
		code:    "Vaš aktivacioni kod",
		expires: "Važi do",
		how:     "Kako da aktivirate svoj eID",
		steps: []string{
			"Otvorite {url} u pregledaču, ili skenirajte QR kod pomoću telefona.",
			"Unesite svoj lični broj i aktivacioni kod, zatim izaberite lozinku.",
			"Registrujte aplikaciju za autentifikaciju ili pristupni ključ (passkey) kao drugi faktor.",
			"Kod važi samo jednom. Ne pokazujte ga nikome: naši službenici ga nikada ne traže. Ako izgubite ovo pismo, dođite na šalter sa svojim ličnim dokumentom.",
		},
		scan:   "Skenirajte da otvorite stranicu za aktivaciju",
		sealed: "Ovo pismo je elektronski overeno pečatom: %s (PAdES). Pečat se može proveriti u svakom PDF čitaču koji proverava potpise.",
	},
	"en": {
		title:   "Activation letter for your electronic identity (eID)",
		number:  "Personal number",
		code:    "Your activation code",
		expires: "Valid until",
		how:     "How to activate your eID",
		steps: []string{
			"Open {url} in a web browser, or scan the QR code with your phone.",
			"Enter your personal number and the activation code, then choose a password.",
			"Enrol an authenticator app or a passkey as your second factor.",
			"The code works once. Show it to nobody: our staff never ask for it. If you lose this letter, come to a service centre with your ID document.",
		},
		scan:   "Scan to open the activation page",
		sealed: "This letter is sealed electronically by %s (PAdES). Any PDF reader that checks signatures can verify the seal.",
	},
}
